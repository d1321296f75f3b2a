<?php

declare(strict_types=1);

namespace Bitville\Apm;

/** A configuration that cannot be used: the agent logs it once and stays disabled. */
final class ConfigException extends \RuntimeException
{
}
