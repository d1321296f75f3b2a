<?php

declare(strict_types=1);

echo "before\n";
/** @phpstan-ignore-next-line */
undefined_function_for_the_test();
