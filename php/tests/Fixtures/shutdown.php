<?php

declare(strict_types=1);

// The application's own shutdown functions and output buffers run as usual
// and before the agent measures the end.

ob_start(static fn (string $buffer): string => strtoupper($buffer));
register_shutdown_function(static function (): void {
    echo "app shutdown\n";
    usleep(200000);
    register_shutdown_function(static function (): void {
        echo "nested shutdown\n";
    });
});
echo "body\n";
