<?php

declare(strict_types=1);

ini_set('memory_limit', '32M');
$keep = [];
while (true) {
    $keep[] = str_repeat('x', 1 << 20);
}
