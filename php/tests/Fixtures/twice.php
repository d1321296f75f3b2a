<?php

declare(strict_types=1);

// Including the bootstrap again (a second auto_prepend_file, an include in
// the application) changes nothing.
require __DIR__ . '/../../bootstrap.php';
require __DIR__ . '/../../bootstrap.php';
echo "ok\n";
