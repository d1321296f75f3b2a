<?php

declare(strict_types=1);

// Prints whether the agent's classes existed before anything autoloaded them.
echo class_exists('Bitville\Apm\Messages', false) && class_exists('Bitville\Apm\Pdo\TracedPdo', false) ? "preloaded\n" : "not preloaded\n";
