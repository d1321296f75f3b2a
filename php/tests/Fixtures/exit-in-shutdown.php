<?php

declare(strict_types=1);

// A shutdown function that calls exit() stops the shutdown functions after
// it, the agent's end handler among them.
register_shutdown_function(static function (): void {
    echo "first\n";
    exit(4);
});
register_shutdown_function(static function (): void {
    echo "never\n";
});
echo "body\n";
