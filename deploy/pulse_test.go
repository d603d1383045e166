package deploy

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// repo is the repository's root, seen from this package's folder.
const repo = ".."

// testVersion is what the test builds stamp into main.version.
const testVersion = "deploy-test"

// goBuild is the `go build` line of a Dockerfile.
type goBuild struct {
	env  []string // NAME=value assignments before `go`
	args []string // after `go`, ${VERSION} expanded, -o pointing at out
	out  string   // the -o path in the Dockerfile
}

// dockerBuild reads the one RUN line of dockerfile that runs `go build`
// and returns it with its output redirected to dst.
func dockerBuild(t *testing.T, dockerfile, dst string) goBuild {
	t.Helper()
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(text), "\\\n", " "), "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " go build ") {
			lines = append(lines, strings.TrimPrefix(l, "RUN "))
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%s: %d RUN lines with `go build`; want 1", dockerfile, len(lines))
	}
	words, err := shellWords(lines[0])
	if err != nil {
		t.Fatalf("%s: %v", dockerfile, err)
	}
	var b goBuild
	for len(words) > 0 && strings.Contains(words[0], "=") {
		b.env, words = append(b.env, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("%s: the RUN line is %q; want [NAME=value ...] go build ...", dockerfile, lines[0])
	}
	for i, w := range words[1:] {
		var unknown []string
		w = os.Expand(w, func(name string) string {
			if name == "VERSION" {
				return testVersion
			}
			unknown = append(unknown, name)
			return ""
		})
		if len(unknown) > 0 {
			t.Fatalf("%s: the go build line uses %v; the test knows only VERSION", dockerfile, unknown)
		}
		if i > 0 && words[i] == "-o" {
			b.out, w = w, dst
		}
		b.args = append(b.args, w)
	}
	if b.out == "" {
		t.Fatalf("%s: the go build line names no -o output", dockerfile)
	}
	if !strings.Contains(string(text), "COPY --from=build "+b.out+" ") {
		t.Errorf("%s: no `COPY --from=build %s ...`: the image does not ship what the build line builds", dockerfile, b.out)
	}
	return b
}

// shellWords splits a command line as sh would, for the quoting a
// Dockerfile's RUN line uses: spaces, '...' and "..." (no escapes within).
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words, in = append(words, w.String()), false
				w.Reset()
			}
		case strings.ContainsRune("|&;<>()`\\", r):
			return nil, fmt.Errorf("shell syntax %q in %q: keep the go build line one plain command", r, s)
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// build runs b in the repository and returns the binary's path.
func (b goBuild) build(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", b.args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), b.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(b.args, " "), err, out)
	}
	return b.args[slices.Index(b.args, "-o")+1]
}

var static struct {
	once sync.Once
	bin  string
	dir  string
	err  error
}

// pulseBinary builds Dockerfile's static binary once for every test of the
// package (TestMain removes it).
func pulseBinary(t *testing.T) string {
	t.Helper()
	static.once.Do(func() {
		// Until the build succeeds, later callers fail too; the first one says why.
		static.err = errors.New("it failed in an earlier test")
		dir, err := os.MkdirTemp("", "pulse-deploy-test-")
		if err != nil {
			t.Fatal(err)
		}
		static.dir = dir
		static.bin = dockerBuild(t, "Dockerfile", filepath.Join(dir, "pulse")).build(t)
		static.err = nil
	})
	if static.err != nil {
		t.Fatalf("build Dockerfile's binary: %v", static.err)
	}
	return static.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if static.dir != "" {
		os.RemoveAll(static.dir)
	}
	os.Exit(code)
}

// checkStatic fails unless the ELF file at path is statically linked: no
// program interpreter, no dynamic section, no needed libraries.
func checkStatic(t *testing.T, path string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s has a %v program header; want a static binary", path, p.Type)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("%s needs %v; want no shared library", path, libs)
	}
}

// checkVersion runs `pulse version` with an empty environment.
func checkVersion(t *testing.T, bin string) {
	t.Helper()
	cmd := exec.Command(bin, "version")
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if got, want := strings.TrimSpace(string(out)), "pulse "+testVersion; err != nil || got != want {
		t.Errorf("pulse version = %q, %v; want %q", got, err, want)
	}
}

// TestDockerfileStaticBinary runs Dockerfile's own go build line: the
// image's binary must be a static ELF, runnable on an empty base image.
func TestDockerfileStaticBinary(t *testing.T) {
	bin := pulseBinary(t)
	checkStatic(t, bin)
	checkVersion(t, bin)
	checkGoVersion(t, "Dockerfile")
	checkImageConfig(t, "Dockerfile", bin)
}

// TestDockerfileChDB checks Dockerfile.chdb's go build line without
// running it (a second full build of another configuration is too slow for
// every `make test`; the chdb-tagged packages are compiled and tested by
// the rest of the suite): it builds ./cmd/pulse with the chdb tag into the
// path the image copies, and the image's ENV and CMD are what the real
// binary accepts.
func TestDockerfileChDB(t *testing.T) {
	bin := pulseBinary(t)
	b := dockerBuild(t, "Dockerfile.chdb", "/dev/null")
	i := slices.Index(b.args, "-tags")
	if i < 0 || i+1 >= len(b.args) || !slices.Contains(strings.Split(b.args[i+1], ","), "chdb") {
		t.Errorf("Dockerfile.chdb: go %s: want -tags with chdb", strings.Join(b.args, " "))
	}
	if b.args[len(b.args)-1] != "./cmd/pulse" {
		t.Errorf("Dockerfile.chdb: go %s: want ./cmd/pulse built", strings.Join(b.args, " "))
	}
	checkGoVersion(t, "Dockerfile.chdb")
	checkImageConfig(t, "Dockerfile.chdb", bin)
}

// checkGoVersion fails when a Dockerfile's default Go image is older than
// go.mod's go directive (the build would fail) or of another minor version.
func checkGoVersion(t *testing.T, dockerfile string) {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	d := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindSubmatch(text)
	if m == nil || d == nil || string(d[1]) != string(m[1]) {
		t.Errorf("%s: ARG GO_VERSION=%s; want go.mod's go %s", dockerfile, at(d, 1), at(m, 1))
	}
}

func at(m [][]byte, i int) string {
	if len(m) <= i {
		return "(none)"
	}
	return string(m[i])
}

// checkImageConfig checks the final stage's ENV and CMD against the real
// binary: every PULSE_* variable names a flag and its value parses.
func checkImageConfig(t *testing.T, dockerfile, bin string) {
	t.Helper()
	text, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(text), "\\\n", " ")
	var env []string
	var cmd []string
	for _, l := range strings.Split(joined, "\n") {
		switch {
		case strings.HasPrefix(l, "ENV "):
			words, err := shellWords(strings.TrimPrefix(l, "ENV "))
			if err != nil {
				t.Fatalf("%s: %v", dockerfile, err)
			}
			env = append(env, words...)
		case strings.HasPrefix(l, "CMD "):
			cmd = jsonArray(t, strings.TrimPrefix(l, "CMD "))
		}
	}
	if len(cmd) == 0 || cmd[0] != "serve" {
		t.Fatalf("%s: CMD %q; want serve ...", dockerfile, cmd)
	}
	checkServe(t, bin, dockerfile, cmd, env)
}

// jsonArray reads the exec form of CMD: ["a", "b"].
func jsonArray(t *testing.T, s string) []string {
	t.Helper()
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		t.Fatalf("%q is not the exec form [\"...\"]", s)
	}
	var out []string
	for _, w := range strings.Split(s[1:len(s)-1], ",") {
		out = append(out, strings.Trim(strings.TrimSpace(w), `"`))
	}
	return out
}

// serveFlag is one flag of `pulse serve` as its -h output shows it.
type serveFlag struct {
	typ string // type name as flag.PrintDefaults writes it ("" for bool)
	def string // default value ("" when the help shows none)
}

var flags struct {
	once sync.Once
	all  map[string]serveFlag
	err  error
}

// serveFlags returns the flags of the real `pulse serve`, read from its -h
// output.
func serveFlags(t *testing.T, bin string) map[string]serveFlag {
	t.Helper()
	flags.once.Do(func() {
		cmd := exec.Command(bin, "serve", "-h")
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		if err != nil {
			flags.err = fmt.Errorf("pulse serve -h: %v\n%s", err, out)
			return
		}
		flags.all = parseHelp(string(out))
		for _, want := range []string{"roles", "http-addr", "drain-grace", "nats-url", "clickhouse-dsn", "migrate"} {
			if _, ok := flags.all[want]; !ok {
				flags.err = fmt.Errorf("pulse serve -h lists no -%s: the help parser is broken\n%s", want, out)
			}
		}
		if d := flags.all["drain-grace"]; d.typ != "duration" || d.def == "" {
			flags.err = fmt.Errorf("pulse serve -h: -drain-grace reads as %+v; want a duration with a default: the help parser is broken", d)
		}
	})
	if flags.err != nil {
		t.Fatal(flags.err)
	}
	return flags.all
}

// parseHelp reads flag.PrintDefaults output: "  -name type" lines, each
// followed by its usage, which ends in "(default X)" unless X is the zero
// value.
func parseHelp(help string) map[string]serveFlag {
	all := map[string]serveFlag{}
	head := regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\S+))?$`)
	def := regexp.MustCompile(` \(default (.*)\)$`)
	last := ""
	for _, line := range strings.Split(help, "\n") {
		if m := head.FindStringSubmatch(line); m != nil {
			last = m[1]
			all[last] = serveFlag{typ: m[2]}
			continue
		}
		if m := def.FindStringSubmatch(line); m != nil && last != "" && strings.HasPrefix(line, "    \t") {
			f := all[last]
			f.def = m[1]
			if u, err := strconv.Unquote(m[1]); err == nil {
				f.def = u
			}
			all[last] = f
		}
	}
	return all
}

// flagSet is a flag set with the real `pulse serve` flags, their types and
// defaults, for reading what arguments and variables set.
func flagSet(t *testing.T, bin string) *flag.FlagSet {
	t.Helper()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	for name, f := range serveFlags(t, bin) {
		switch f.typ {
		case "":
			fs.Bool(name, false, "")
		case "duration":
			fs.Duration(name, 0, "")
		case "int", "int64":
			fs.Int64(name, 0, "")
		case "uint", "uint64":
			fs.Uint64(name, 0, "")
		case "float":
			fs.Float64(name, 0, "")
		default:
			fs.String(name, "", "")
		}
		if f.def != "" {
			if err := fs.Set(name, f.def); err != nil {
				t.Fatalf("-%s: default %q: %v", name, f.def, err)
			}
		}
	}
	return fs
}

func flagString(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

func flagDuration(fs *flag.FlagSet, name string) time.Duration {
	return fs.Lookup(name).Value.(flag.Getter).Get().(time.Duration)
}

// envName is the environment twin of a flag, as cmd/pulse names it.
func envName(flagName string) string {
	return "PULSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// otherEnv are the variables besides PULSE_* that deployment files may set.
var otherEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "CHDB_LIB_PATH": true}

// checkServe checks one way of running `pulse serve args...` with env
// (NAME=value): every PULSE_* name is a flag's twin or a _FILE twin the
// binary honours, and the real binary parses args and env (run with -h, so
// that it stops once they are parsed). It returns the parsed flags.
func checkServe(t *testing.T, bin, where string, args, env []string) *flag.FlagSet {
	t.Helper()
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("%s: command %q; want serve ...", where, args)
	}
	fs := flagSet(t, bin)
	twins := map[string]string{}
	for name := range serveFlags(t, bin) {
		twins[envName(name)] = name
	}
	files := t.TempDir()
	run := []string{"PATH=" + os.Getenv("PATH")}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Errorf("%s: %q is not NAME=value", where, kv)
			continue
		}
		switch name, isTwin := twins[k]; {
		case isTwin:
			if err := fs.Set(name, v); err != nil {
				t.Errorf("%s: %s=%q: %v", where, k, v, err)
			}
		case strings.HasSuffix(k, "_FILE") && twins[strings.TrimSuffix(k, "_FILE")] != "":
			if !filepath.IsAbs(v) && !strings.HasPrefix(v, "%d/") {
				t.Errorf("%s: %s=%q; want an absolute path", where, k, v)
			}
			checkFileTwin(t, bin, where, k)
			// The binary reads the file while parsing: give it one.
			f := filepath.Join(files, k)
			if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			v = f
		case otherEnv[k]:
		default:
			t.Errorf("%s: %s is no PULSE_* twin of a `pulse serve` flag", where, k)
			continue
		}
		run = append(run, k+"="+v)
	}
	// As the binary does: the environment first, then the arguments win.
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		t.Errorf("%s: %q: %v (extra %q)", where, args, err, fs.Args())
	}
	cmd := exec.Command(bin, append(slices.Clone(args), "-h")...)
	cmd.Env = run
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: pulse %s -h with its environment: %v\n%s", where, strings.Join(args, " "), err, lastLines(string(out), 5))
	}
	return fs
}

var fileTwins sync.Map // name -> error or nil

// checkFileTwin fails unless the binary reads the secret file named by the
// variable k (a PULSE_*_FILE twin): pointed at a missing file, `pulse serve
// -h` must stop with a usage error naming k.
func checkFileTwin(t *testing.T, bin, where, k string) {
	t.Helper()
	v, ok := fileTwins.Load(k)
	if !ok {
		cmd := exec.Command(bin, "serve", "-h")
		cmd.Env = []string{k + "=/nonexistent/pulse-deploy-test"}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 2 && strings.Contains(string(out), k) {
			v = error(nil)
		} else {
			v = fmt.Errorf("with %s naming a missing file, pulse serve -h = %v; want exit 2 naming it: the binary ignores %s", k, err, k)
		}
		fileTwins.Store(k, v)
	}
	if err, _ := v.(error); err != nil {
		t.Errorf("%s: %v", where, err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// roles are the roles of `pulse serve --roles`, each of which the
// deployment files must run.
var roles = []string{"ingest", "aggregator", "query", "alerts"}
