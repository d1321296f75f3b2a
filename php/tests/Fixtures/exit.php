<?php

declare(strict_types=1);

echo "exiting\n";
if (($argv[1] ?? '') === 'report' && class_exists(\Bitville\Apm\Agent::class, false)) {
    \Bitville\Apm\Agent::setExitCode(3);
}
exit(3);
