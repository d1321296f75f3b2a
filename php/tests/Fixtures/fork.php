<?php

declare(strict_types=1);

$pid = pcntl_fork();
if ($pid === 0) {
    echo "child\n";
    exit(0);
}
pcntl_waitpid($pid, $status);
echo "parent\n";
