#!/usr/bin/env bash
# Sends the golden protocol messages (testdata/protocol/*.json) to an agent
# socket, as a PHP worker would: start, progress, end, then a CLI end.
#   scripts/send-golden.sh [SOCKET]
set -euo pipefail
sock=${1:-/run/bitville-apm/agent.sock}
dir="$(cd "$(dirname "$0")/.." && pwd)/testdata/protocol"
for f in start progress end end-cli; do
	python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.sendto(open(sys.argv[2],"rb").read().strip(), sys.argv[1])' "$sock" "$dir/$f.json"
	echo "sent $f.json"
done
