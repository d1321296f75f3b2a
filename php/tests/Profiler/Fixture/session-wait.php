<?php

// Run by WallProfileTest: opens a session another process holds, under the
// real-clock profiler, and prints the wall list as JSON.

declare(strict_types=1);

namespace BitvilleSessionFixture;

use Bitville\Apm\Profiler\SamplingProfiler;

require __DIR__ . '/../autoload.php';

function waitForTheSession(string $dir, string $id): void
{
    session_save_path($dir);
    session_id($id);
    session_start();
    $_SESSION['seen'] = true;
}

$p = new SamplingProfiler(0.05, SamplingProfiler::CPU_CLOCK, 0.0, 0.01);
$p->start();
waitForTheSession($argv[1], $argv[2]);
$r = $p->stop();
echo json_encode($r['wall'] ?? []);
