<?php

declare(strict_types=1);

// A plain CLI script: prints, runs a "statement" through the manual API,
// raises a warning handled by its own error handler, which chains to the
// previous handler as well-behaved handlers do.

$previous = null;
$previous = set_error_handler(static function (int $no, string $msg, string $file = '', int $line = 0) use (&$previous): bool {
    echo "app handler: $msg\n";
    if ($previous !== null) {
        $previous($no, $msg, $file, $line);
    }
    return true;
});

echo "hello\n";
if (class_exists(\Bitville\Apm\Agent::class, false)) {
    \Bitville\Apm\Agent::recordSql("SELECT * FROM users WHERE password = 'hunter2'", 0.0125, 1);
    $span = \Bitville\Apm\Agent::startSql('SELECT pg_sleep(0)');
    $span->stop(1);
}
$a = [];
echo $a['missing'] ?? 'default', "\n";
echo $a['missing'], "\n";
echo "bye\n";
