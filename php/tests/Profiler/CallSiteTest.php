<?php

declare(strict_types=1);

namespace Bitville\Apm\Tests\Profiler;

use Bitville\Apm\Profiler\CallSite;
use Bitville\Apm\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Fixture/callsites.php';

/**
 * The call named for a resume position, on fixture files whose resume
 * lines are marked: frames as Excimer's getTrace() gives them.
 */
final class CallSiteTest extends TestCase
{
    private const FIXTURE = __DIR__ . '/Fixture/callsites.php';
    private const NS = 'BitvilleCallSiteFixture\\';

    protected function setUp(): void
    {
        CallSite::reset();
    }

    private static function line(string $file, string $case): int
    {
        foreach (file($file) ?: [] as $i => $text) {
            if (str_ends_with(rtrim($text), '// resume: ' . $case)) {
                return $i + 1;
            }
        }
        self::fail("no resume marker $case in $file");
    }

    /** @return array<string, array{string, string, string, ?string}> case, class, function, want */
    public static function cases(): array
    {
        return [
            'a call statement, the next statement on the next line' => ['session', '', self::NS . 'sessionStart', 'session_start'],
            'an assignment goes on after the call' => ['fread', '', self::NS . 'readSocket', 'fread'],
            'a condition goes on after the call' => ['flock', '', self::NS . 'lockFile', 'flock'],
            'a method on an unknown object' => ['redis', 'BitvilleCallSiteFixture\\Store', 'get', '->get'],
            'a constructor over several lines' => ['pdo', 'BitvilleCallSiteFixture\\Store', 'connect', 'PDO::__construct'],
            'a static method through an import' => ['static', 'BitvilleCallSiteFixture\\Store', 'cached', 'Redis::get'],
            'user methods of $this are left out' => ['this', 'BitvilleCallSiteFixture\\Store', 'viaThis', 'fgets'],
            'the last statement: the closing brace' => ['closing', 'BitvilleCallSiteFixture\\Store', 'lastStatement', 'usleep'],
            'an argument on a line of its own' => ['multiline-arg', '', self::NS . 'multiLine', 'stream_select'],
            'a call statement over several lines, then a comment' => ['multiline-statement', '', self::NS . 'multiLineStatement', 'usleep'],
            'a call statement followed on the same line' => ['same-line', '', self::NS . 'sameLine', 'usleep'],
            'nested calls: the innermost' => ['nested', '', self::NS . 'nested', 'curl_exec'],
            'only user functions: unsure' => ['user-only', '', self::NS . 'userOnly', null],
            'two unrelated calls: unsure' => ['siblings', '', self::NS . 'siblings', null],
            'a loop back-edge: unsure' => ['loop', '', self::NS . 'loop', null],
            'no call before: unsure' => ['no-call', '', self::NS . 'afterAssignment', null],
            'a variable function: unsure' => ['variable', '', self::NS . 'variable', null],
            'another function than the frame: unsure' => ['fread', '', self::NS . 'lockFile', null],
        ];
    }

    /** @dataProvider cases */
    public function testResolve(string $case, string $class, string $function, ?string $want): void
    {
        $frame = ['file' => self::FIXTURE, 'line' => self::line(self::FIXTURE, $case), 'function' => $function];
        if ($class !== '') {
            $frame['class'] = $class;
        }
        self::assertSame($want, CallSite::resolve($frame));
        self::assertSame($want, CallSite::resolve($frame), 'the same from the cache');
    }

    public function testClosureFrame(): void
    {
        $line = self::line(self::FIXTURE, 'closure');
        $frame = ['file' => self::FIXTURE, 'line' => $line, 'function' => '{closure}', 'closure_line' => $line - 2];
        self::assertSame('sleep', CallSite::resolve($frame));
        $frame['closure_line'] = 1;
        self::assertNull(CallSite::resolve($frame), 'no closure starts there');
    }

    public function testTopLevelCode(): void
    {
        $file = __DIR__ . '/Fixture/callsite-toplevel.php';
        self::assertSame('session_start', CallSite::resolve(['file' => $file, 'line' => self::line($file, 'top-level')]));
        // a line inside a function is not top-level code
        self::assertNull(CallSite::resolve(['file' => self::FIXTURE, 'line' => self::line(self::FIXTURE, 'session')]));
    }

    public function testFilesItCannotReadKeepTheUserFunction(): void
    {
        $dir = TempDir::create();
        try {
            $big = $dir . '/big.php';
            file_put_contents($big, "<?php\nfunction f() {\n    session_start();\n    \$x = 1;\n}\n" . str_repeat('//' . str_repeat('x', 1000) . "\n", 1100));
            self::assertGreaterThan(CallSite::MAX_FILE_BYTES, filesize($big));
            self::assertNull(CallSite::resolve(['file' => $big, 'line' => 4, 'function' => 'f']));

            $small = $dir . '/small.php';
            file_put_contents($small, "<?php\nfunction f() {\n    session_start();\n    \$x = 1;\n}\n");
            self::assertSame('session_start', CallSite::resolve(['file' => $small, 'line' => 4, 'function' => 'f']));

            self::assertNull(CallSite::resolve(['file' => $dir . '/missing.php', 'line' => 4, 'function' => 'f']));
            self::assertNull(CallSite::resolve(['file' => 'php shell code', 'line' => 1]));
            self::assertNull(CallSite::resolve(['line' => 4, 'function' => 'f']));
            self::assertNull(CallSite::resolve(['file' => $small, 'line' => 0, 'function' => 'f']));
            file_put_contents($dir . '/broken.php', "<?php\nfunction f( {\n    session_start(\n    \$x = ;\n");
            self::assertNull(CallSite::resolve(['file' => $dir . '/broken.php', 'line' => 4, 'function' => 'f']));
        } finally {
            TempDir::remove($dir);
        }
    }

    public function testTheFileCacheIsBounded(): void
    {
        $dir = TempDir::create();
        try {
            for ($i = 0; $i < CallSite::MAX_FILES + 10; $i++) {
                $f = "$dir/f$i.php";
                file_put_contents($f, "<?php\nfunction f$i() {\n    session_start();\n    \$x = 1;\n}\n");
                self::assertSame('session_start', CallSite::resolve(['file' => $f, 'line' => 4, 'function' => "f$i"]));
            }
            $files = (new \ReflectionClass(CallSite::class))->getProperty('files');
            $files->setAccessible(true);
            self::assertCount(CallSite::MAX_FILES, $files->getValue());
        } finally {
            TempDir::remove($dir);
        }
    }
}
