package protocol

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "protocol", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeGolden(t *testing.T) {
	var d Decoder
	var m Message

	t.Run("start", func(t *testing.T) {
		if err := d.Decode(readGolden(t, "start.json"), &m); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if m.Type != TypeStart || m.ID != "5f0c6a7e9b1d4c2a8e3f4b5c6d7e8f90" || m.PID != 12345 || m.Project != "shop" {
			t.Errorf("got type %v id %q pid %d project %q", m.Type, m.ID, m.PID, m.Project)
		}
		if m.Method != "GET" || m.Endpoint != "GET /orders/{id}" || m.URI != "/orders/12345" || m.Pool != "www" {
			t.Errorf("got method %q endpoint %q uri %q pool %q", m.Method, m.Endpoint, m.URI, m.Pool)
		}
		if m.Started != 1764294512.120001 || m.CID != "0af7651916cd43dd8448eb211c80319c" || m.TraceID != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("got started %v cid %q trace id %q", m.Started, m.CID, m.TraceID)
		}
	})
	t.Run("progress", func(t *testing.T) {
		if err := d.Decode(readGolden(t, "progress.json"), &m); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if m.Type != TypeProgress || m.Elapsed != 10.010001 || m.Sequence != 1 || m.Memory != 8388608 || m.CPU != 9.42 {
			t.Errorf("got %+v", m)
		}
		if len(m.Stack) != 5 || m.Stack[0] != "{main}" || m.Stack[4] != "PDOStatement::execute" {
			t.Errorf("got stack %q", m.Stack)
		}
	})
	t.Run("end", func(t *testing.T) {
		if err := d.Decode(readGolden(t, "end.json"), &m); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if m.Type != TypeEnd || m.Status != 200 || m.Wall != 0.04801 || m.CPUUser != 0.031 || m.CPUSys != 0.004 || m.MemPeak != 6291456 {
			t.Errorf("got type %v status %d wall %v cpu %v+%v mem %d", m.Type, m.Status, m.Wall, m.CPUUser, m.CPUSys, m.MemPeak)
		}
		if len(m.SQL) != 20 || len(m.Functions) != 50 || len(m.Stacks) != 3 || len(m.Errors) != 1 {
			t.Fatalf("got %d sql, %d functions, %d stacks, %d errors; want 20, 50, 3, 1", len(m.SQL), len(m.Functions), len(m.Stacks), len(m.Errors))
		}
		if !strings.HasPrefix(m.SQL[0].Query, "SELECT o.id") || m.SQL[0].Rows != 1 || m.SQL[0].Duration != 0.0002 {
			t.Errorf("got sql[0] %+v", m.SQL[0])
		}
		if m.Functions[0].Name != "{main}" || m.Profiler != "excimer" || m.Period != 0.001 {
			t.Errorf("got fn[0] %+v profiler %q period %v", m.Functions[0], m.Profiler, m.Period)
		}
		want := []WallEntry{
			{Function: "->execute", Caller: `App\Models\Order::findFirst`, Seconds: 0.014},
			{Function: "session_start", Caller: `App\Controllers\OrdersController::showAction`, Seconds: 0.012},
			{Function: `App\Services\Pricing::recalculate`, Caller: `App\Controllers\OrdersController::showAction`, Seconds: 0.011},
			{Function: "{main}", Caller: "", Seconds: 0.001},
		}
		if !slices.Equal(m.WallFunctions, want) {
			t.Errorf("got wall_fn %+v; want %+v", m.WallFunctions, want)
		}
		if m.Errors[0].Type != "E_WARNING" || m.Errors[0].Line != 88 {
			t.Errorf("got error %+v", m.Errors[0])
		}
		if m.HasExit {
			t.Errorf("got HasExit for an fpm request")
		}
		if !m.Forced || m.TraceID != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("got forced %v trace id %q; want true and the traceparent's", m.Forced, m.TraceID)
		}
		if len(m.Sites) != 3 || len(m.Sites[0]) != 3 || m.Sites[0][0] != `/srv/shop/app/Models/Order.php:41 App\Models\Order::findWithItems` || m.Sites[2][1] != "/srv/shop/public/index.php:12 {main}" {
			t.Errorf("got sites %q", m.Sites)
		}
		var sites []int
		for _, s := range m.SQL {
			sites = append(sites, s.Site)
		}
		if want := []int{0, 0, 1, 1, 2, 1, 2, 1, 0, 0, 1, 1, 2, 1, 2, 1, 0, 0, -1, -1}; !slices.Equal(sites, want) {
			t.Errorf("got sql sites %v; want %v", sites, want)
		}
	})
	t.Run("end-cli", func(t *testing.T) {
		if err := d.Decode(readGolden(t, "end-cli.json"), &m); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !m.HasExit || m.Exit != 0 || m.Method != "CLI" || m.Endpoint != "CLI bin/cron/reindex.php" || m.SAPI != "cli" {
			t.Errorf("got exit %v/%d method %q endpoint %q sapi %q", m.HasExit, m.Exit, m.Method, m.Endpoint, m.SAPI)
		}
		if len(m.SQL) != 3 || m.SQL[0].Rows != 500 || m.SQL[0].Cut || !m.SQL[2].Cut || len(m.Errors) != 0 {
			t.Errorf("got sql %+v errors %+v; want 3 statements, the last one cut", m.SQL, m.Errors)
		}
		if len(m.WallFunctions) != 3 || m.WallFunctions[1] != (WallEntry{Function: "fread", Caller: `App\Search\Feed::next`, Seconds: 12.5}) {
			t.Errorf("got wall_fn %+v; want 3 entries, the second fread from App\\Search\\Feed::next", m.WallFunctions)
		}
		if len(m.Truncated) != 1 || m.Truncated[0] != "sql.q" {
			t.Errorf("got truncated %q; want [sql.q]", m.Truncated)
		}
		if m.Forced || m.TraceID != "" || len(m.Sites) != 0 || m.SQL[0].Site != -1 {
			t.Errorf("got forced %v trace id %q sites %q sql[0].site %d; want none", m.Forced, m.TraceID, m.Sites, m.SQL[0].Site)
		}
	})
}

// Version 1 (seconds as JSON numbers) is still accepted: each golden
// message of testdata/protocol/v1/ decodes to what its version 2 twin
// (microseconds as integers) does, float for float.
func TestDecodeVersion1(t *testing.T) {
	for _, name := range []string{"start.json", "progress.json", "end.json", "end-cli.json"} {
		t.Run(name, func(t *testing.T) {
			v1b, v2b := readGolden(t, filepath.Join("v1", name)), readGolden(t, name)
			if !strings.HasPrefix(string(v1b), `{"v":1,`) || !strings.HasPrefix(string(v2b), `{"v":2,`) {
				t.Fatalf("want a version 1 and a version 2 message: %.12s, %.12s", v1b, v2b)
			}
			var d Decoder
			var v1, v2 Message
			if err := d.Decode(v1b, &v1); err != nil {
				t.Fatalf("version 1: %v", err)
			}
			if err := d.Decode(v2b, &v2); err != nil {
				t.Fatalf("version 2: %v", err)
			}
			if !reflect.DeepEqual(v1, v2) {
				t.Errorf("version 1 decodes to\n%+v\nversion 2 to\n%+v", v1, v2)
			}
			if v2.TS == 0 || v2.Started == 0 && v2.Type != TypeProgress {
				t.Errorf("times not read: ts %v started %v", v2.TS, v2.Started)
			}
		})
	}
}

// Version 2's microseconds as a 32-bit PHP writes the large ones: integral
// floats, in exponent form or with a zero fraction. They decode to the
// same values as integers.
func TestDecodeVersion2IntegralFloats(t *testing.T) {
	var d Decoder
	var want, got Message
	if err := d.Decode(readGolden(t, "end-cli.json"), &want); err != nil {
		t.Fatal(err)
	}
	b := strings.NewReplacer(`"ts":1764294600500000`, `"ts":1.7642946005e+15`, `"wall":60250000`, `"wall":60250000.0`).Replace(string(readGolden(t, "end-cli.json")))
	if !strings.Contains(b, "e+15") || !strings.Contains(b, "60250000.0") {
		t.Fatalf("the golden changed: %s", b)
	}
	if err := d.Decode([]byte(b), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Errorf("integral floats decode to\n%+v\nintegers to\n%+v", got, want)
	}
	for _, bad := range []string{`"wall":60250000.5`, `"wall":1e300`} {
		m := strings.Replace(string(readGolden(t, "end-cli.json")), `"wall":60250000`, bad, 1)
		var de *DecodeError
		if err := d.Decode([]byte(m), &got); !errors.As(err, &de) || de.Reason != ReasonRange || de.Field != "wall" {
			t.Errorf("%s: got %v; want a range error on wall", bad, err)
		}
	}
}

// TestDecodeInvalid reads testdata/protocol/invalid/<reason>-<name>.json and
// checks that each is rejected with the reason its name starts with.
func TestDecodeInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "protocol", "invalid", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid golden messages: %v", err)
	}
	var d Decoder
	var m Message
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			want := Reason(name[:strings.IndexByte(name, '-')])
			err = d.Decode(b, &m)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got error %v; want a *DecodeError with reason %s", err, want)
			}
			if de.Reason != want {
				t.Errorf("got reason %s (%v); want %s", de.Reason, err, want)
			}
		})
	}
}

func TestDecodeCases(t *testing.T) {
	const base = `"v":1,"id":"r1","pid":7,"project":"p","ts":1764294512.5,"method":"GET","started":1764294512.5`
	tests := []struct {
		name  string
		in    string
		want  Reason // "" means accepted
		field string
	}{
		{"minimal start", `{` + base + `,"type":"start"}`, "", ""},
		{"minimal end", `{` + base + `,"type":"end","endpoint":"GET /","wall":0}`, "", ""},
		{"unknown fields ignored", `{` + base + `,"type":"start","future":{"x":[1,2]}}`, "", ""},
		{"null optional", `{` + base + `,"type":"start","cid":null,"uri":null}`, "", ""},
		{"version float", `{` + strings.Replace(base, `"v":1`, `"v":1.5`, 1) + `,"type":"start"}`, ReasonVersion, "v"},
		{"version string", `{` + strings.Replace(base, `"v":1`, `"v":"1"`, 1) + `,"type":"start"}`, ReasonVersion, "v"},
		{"type number", `{` + base + `,"type":3}`, ReasonType, "type"},
		{"end without endpoint", `{` + base + `,"type":"end","wall":0.1}`, ReasonMissing, "endpoint"},
		{"progress without elapsed", `{` + base + `,"type":"progress"}`, ReasonMissing, "elapsed"},
		{"fraction pid", `{` + strings.Replace(base, `"pid":7`, `"pid":7.5`, 1) + `,"type":"start"}`, ReasonRange, "pid"},
		{"huge pid", `{` + strings.Replace(base, `"pid":7`, `"pid":1e300`, 1) + `,"type":"start"}`, ReasonRange, "pid"},
		{"ts in 1970", `{` + strings.Replace(base, `"ts":1764294512.5`, `"ts":5`, 1) + `,"type":"start"}`, ReasonRange, "ts"},
		{"long method", `{` + strings.Replace(base, `"method":"GET"`, `"method":"`+strings.Repeat("G", 17)+`"`, 1) + `,"type":"start"}`, ReasonRange, "method"},
		{"control char", `{` + base + `,"type":"start","uri":"/a\u0000b"}`, ReasonRange, "uri"},
		{"lone surrogate becomes U+FFFD", `{` + base + `,"type":"start","uri":"/a\ud800b"}`, "", ""},
		{"invalid UTF-8", `{` + base + `,"type":"start","uri":"/a` + "\xff" + `b"}`, ReasonRange, "uri"},
		{"bool as string", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"fatal":"yes"}`, ReasonFieldType, "fatal"},
		{"sql element not object", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"sql":["SELECT 1"]}`, ReasonFieldType, "sql[0]"},
		{"sql missing text", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"sql":[{"d":0.1}]}`, ReasonMissing, "sql[0].q"},
		{"sql negative rows", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"sql":[{"q":"x","d":0.1,"rows":-2}]}`, ReasonRange, "sql[0].rows"},
		{"fn self above inclusive", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"fn":[{"n":"f","self":2,"incl":1}]}`, ReasonRange, "fn[0].self"},
		{"fn empty name", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"fn":[{"n":"","self":0,"incl":0}]}`, ReasonRange, "fn[0].n"},
		{"wall_fn without caller", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"usleep","s":0.1}]}`, "", ""},
		{"wall_fn not an array", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":{"n":"usleep","s":0.1}}`, ReasonFieldType, "wall_fn"},
		{"wall_fn element not object", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":["usleep"]}`, ReasonFieldType, "wall_fn[0]"},
		{"wall_fn empty name", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"","s":0.1}]}`, ReasonRange, "wall_fn[0].n"},
		{"wall_fn long caller", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"f","c":"` + strings.Repeat("c", MaxFunctionLen+1) + `","s":0.1}]}`, ReasonRange, "wall_fn[0].c"},
		{"wall_fn caller not a string", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"f","c":1,"s":0.1}]}`, ReasonFieldType, "wall_fn[0].c"},
		{"wall_fn missing seconds", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"f"}]}`, ReasonMissing, "wall_fn[0].s"},
		{"wall_fn seconds past a month", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"f","s":2592001}]}`, ReasonRange, "wall_fn[0].s"},
		{"wall_fn second entry bad", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"wall_fn":[{"n":"f","s":1},{"n":"g","s":-1}]}`, ReasonRange, "wall_fn[1].s"},
		{"trace id", `{` + base + `,"type":"start","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`, "", ""},
		{"trace id null", `{` + base + `,"type":"start","trace_id":null}`, "", ""},
		{"trace id short", `{` + base + `,"type":"start","trace_id":"4bf92f3577b34da6a3ce929d0e0e473"}`, ReasonRange, "trace_id"},
		{"trace id long", `{` + base + `,"type":"start","trace_id":"4bf92f3577b34da6a3ce929d0e0e47361"}`, ReasonRange, "trace_id"},
		{"trace id not hex", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"trace_id":"4bf92f3577b34da6a3ce929d0e0e473g"}`, ReasonRange, "trace_id"},
		{"trace id number", `{` + base + `,"type":"start","trace_id":42}`, ReasonFieldType, "trace_id"},
		{"forced not bool", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"forced":1}`, ReasonFieldType, "forced"},
		{"site", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[["a.php:1 {main}"]],"sql":[{"q":"x","d":0,"site":0},{"q":"y","d":0,"site":null}]}`, "", ""},
		{"site without sites", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sql":[{"q":"x","d":0,"site":0}]}`, ReasonRange, "sql[0].site"},
		{"site negative", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[["a.php:1 {main}"]],"sql":[{"q":"x","d":0,"site":-1}]}`, ReasonRange, "sql[0].site"},
		{"site fraction", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[["a.php:1 {main}"]],"sql":[{"q":"x","d":0,"site":0.5}]}`, ReasonRange, "sql[0].site"},
		{"sites not an array", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":{"a":1}}`, ReasonFieldType, "sites"},
		{"site not an array", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":["a.php:1 {main}"]}`, ReasonFieldType, "sites[0]"},
		{"site without frames", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[[]]}`, ReasonRange, "sites[0]"},
		{"site frame empty", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[["a.php:1 f",""]]}`, ReasonRange, "sites[0][1]"},
		{"site frame not a string", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[[1]]}`, ReasonFieldType, "sites[0][0]"},
		{"site frame too long", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[["` + strings.Repeat("f", MaxSiteFrameLen+1) + `"]]}`, ReasonRange, "sites[0][0]"},
		{"site frames too many", `{` + base + `,"type":"end","endpoint":"GET /","wall":0,"sites":[[` + strings.Repeat(`"f",`, MaxSiteFrames) + `"f"]]}`, ReasonTooMany, "sites[0]"},
		{"stack zero samples", `{` + base + `,"type":"end","endpoint":"GET /","wall":0.1,"stacks":[{"s":"a;b","n":0}]}`, ReasonRange, "stacks[0].n"},
		{"stack frames not strings", `{"v":1,"id":"r1","pid":7,"project":"p","ts":1764294512.5,"type":"progress","elapsed":1,"stack":[1]}`, ReasonFieldType, "stack[0]"},
		{"trailing garbage", `{` + base + `,"type":"start"} x`, ReasonJSON, ""},
		{"empty", ``, ReasonJSON, ""},
	}
	var d Decoder
	var m Message
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Decode([]byte(tc.in), &m)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v; want accepted", err)
				}
				return
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got %v; want reason %s", err, tc.want)
			}
			if de.Reason != tc.want || de.Field != tc.field {
				t.Errorf("got reason %s field %q (%v); want %s field %q", de.Reason, de.Field, err, tc.want, tc.field)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	var d Decoder
	var m Message
	b := make([]byte, MaxDatagramSize+1)
	err := d.Decode(b, &m)
	var de *DecodeError
	if !errors.As(err, &de) || de.Reason != ReasonTooLarge {
		t.Fatalf("got %v; want reason %s", err, ReasonTooLarge)
	}
}

// TestDecodeReuse checks that a Message reused for a smaller message keeps
// nothing of the larger one.
func TestDecodeReuse(t *testing.T) {
	var d Decoder
	var m Message
	if err := d.Decode(readGolden(t, "end.json"), &m); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode(readGolden(t, "start.json"), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.SQL) != 0 || len(m.Functions) != 0 || len(m.WallFunctions) != 0 || m.Wall != 0 || m.Status != 0 || m.Profiler != "" || len(m.Sites) != 0 || m.Forced {
		t.Errorf("got leftovers from the previous message: %d sql, %d functions, %d sites, wall %v, forced %v", len(m.SQL), len(m.Functions), len(m.Sites), m.Wall, m.Forced)
	}
}

// TestDecodeSitesReuse checks that a site table decoded into the frame
// slices of an earlier, longer one holds the new frames only.
func TestDecodeSitesReuse(t *testing.T) {
	var d Decoder
	var m Message
	if err := d.Decode(readGolden(t, "end.json"), &m); err != nil {
		t.Fatal(err)
	}
	const small = `{"v":1,"type":"end","id":"r","pid":1,"project":"p","ts":1764294512,"method":"GET","endpoint":"GET /","started":1764294512,"wall":0.1,` +
		`"sites":[["b.php:2 g"],["c.php:3 h","d.php:4 {main}"]],"sql":[{"q":"x","d":0.1,"site":1}]}`
	if err := d.Decode([]byte(small), &m); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"b.php:2 g"}, {"c.php:3 h", "d.php:4 {main}"}}
	if !slices.EqualFunc(m.Sites, want, slices.Equal) || m.SQL[0].Site != 1 {
		t.Errorf("got sites %q sql[0].site %d; want %q and 1", m.Sites, m.SQL[0].Site, want)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := d.Decode([]byte(small), &m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("decoding a known site table again allocates %v times; want 0", allocs)
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"start.json", "progress.json", "end.json", "end-cli.json"} {
		f.Add(readGolden(f, name))
	}
	f.Add([]byte(`{"v":1,"type":"end","sql":[{"q":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		var m Message
		err := d.Decode(b, &m)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("got error of type %T; want *DecodeError", err)
			}
			return
		}
		if m.Type == TypeUnknown || m.ID == "" || m.Project == "" || m.PID <= 0 {
			t.Fatalf("accepted a message without identity: %+v", m)
		}
		if len(m.SQL) > MaxSQL || len(m.Functions) > MaxFunctions || len(m.WallFunctions) > MaxWall || m.Wall < 0 || m.Wall > MaxDurationSec {
			t.Fatalf("accepted a message beyond limits")
		}
		for _, s := range m.SQL {
			if s.Site < -1 || s.Site >= len(m.Sites) {
				t.Fatalf("accepted sql site %d with %d sites", s.Site, len(m.Sites))
			}
		}
	})
}

func BenchmarkDecodeEnd(b *testing.B) {
	msg := readGolden(b, "end.json")
	var d Decoder
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := d.Decode(msg, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInternBounded checks that a stream of unique texts does not grow the
// decoder's reuse set past its bounds, and that reuse returns equal strings.
func TestInternBounded(t *testing.T) {
	var d Decoder
	var m Message
	big := strings.Repeat("x", 4000)
	for i := 0; i < 5000; i++ {
		msg := fmt.Sprintf(`{"v":1,"type":"end","id":"r","pid":1,"project":"p","ts":1764294512,"method":"GET","endpoint":"GET /","started":1764294512,"wall":0.1,"sql":[{"q":"SELECT %d %s","d":0.1}]}`, i, big)
		if err := d.Decode([]byte(msg), &m); err != nil {
			t.Fatal(err)
		}
		if d.internedBytes > maxInternedBytes || len(d.interned) > maxInterned {
			t.Fatalf("after %d messages: %d bytes in %d strings; limits %d and %d", i, d.internedBytes, len(d.interned), maxInternedBytes, maxInterned)
		}
		if want := fmt.Sprintf("SELECT %d %s", i, big); m.SQL[0].Query != want {
			t.Fatalf("got a different query text back")
		}
	}
}
