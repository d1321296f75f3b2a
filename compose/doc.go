// Package compose holds the docker compose stack of Bitville APM
// (docker-compose.yml and the files it mounts; see README.md). It has no
// code: its tests validate the stack without Docker — the compose file
// against the compose specification, the files it mounts and builds from,
// the Prometheus configuration with promtool, the Grafana provisioning,
// and the settings the services must agree on (sockets, paths, flags,
// passwords).
package compose
