<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Support;

use Bitville\Apm\Profiler\Profiler;

/** A Profiler that returns a fixed profile (or throws, like a broken one would). */
final class FakeProfiler implements Profiler
{
    public int $starts = 0;
    public int $stops = 0;
    /** @var list<float> periods fullRate() was called with */
    public array $fullRates = [];

    /** @param array<string, mixed> $profile */
    public function __construct(private readonly array $profile, private readonly string $name = 'excimer', private readonly bool $throw = false)
    {
    }

    public function name(): string
    {
        return $this->name;
    }

    public function start(): void
    {
        $this->starts++;
    }

    /** @var list<float> lateSec of each fullRate() */
    public array $lates = [];
    /** @var list<array{string, string, float}> addWall() calls */
    public array $walls = [];

    public function fullRate(float $periodSec, float $lateSec = 0.0): void
    {
        $this->fullRates[] = $periodSec;
        $this->lates[] = $lateSec;
    }

    public function addWall(string $function, string $caller, float $seconds): void
    {
        $this->walls[] = [$function, $caller, $seconds];
    }

    public function stop(): array
    {
        $this->stops++;
        if ($this->throw) {
            throw new \RuntimeException('profiler broke');
        }
        return $this->profile;
    }
}
