// Command pulse is WedSync's system-health and performance monitoring
// pipeline. One binary, subcommands:
//
//	pulse serve     run the pipeline (all roles, or --roles ingest,aggregator,query)
//	pulse migrate   apply the ClickHouse schema
//	pulse loadtest  load a Pulse over HTTP and judge it against the spec's targets
//	pulse version   print the version
//
// Every flag has a PULSE_* environment twin: --http-addr is PULSE_HTTP_ADDR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/wedsync/pulse/alerts"
	"github.com/wedsync/pulse/internal/stream"
)

var version = "dev"

func main() {
	// go-redis logs connection failures on its own, with Redis's address;
	// Pulse reports Redis trouble itself, without internals.
	redis.SetLogger(quietRedis{})
	// Durations in logs read as Go writes them (interval=15s), not as bare
	// milliseconds. A format setting of the zerolog package, not a logger.
	zerolog.DurationFieldFormat = zerolog.DurationFormatString
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// errUsage marks a command-line mistake; it exits with status 2.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(ctx, rest, stdout, stderr)
	case "migrate":
		err = migrate(ctx, rest, stdout, stderr)
	case "loadtest":
		err = loadtestCmd(ctx, rest, stdout, stderr)
	case "rules":
		err = rulesCmd(rest, stdout)
	case "alerts":
		err = alertsCmd(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "pulse", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "pulse: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "pulse:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "pulse:", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: pulse <command> [flags]

Commands:
  serve     run the pipeline: ingest edge, aggregator, query API (see --roles)
  migrate   apply the ClickHouse schema and exit
  loadtest  load a Pulse over HTTP (10,000 users by default), print PASS/FAIL against the spec's targets
  rules check FILE         validate an alert rules file (exit 1 naming each problem's line)
  alerts tail [--firing]   print live alerts from a Pulse's NATS (--firing: first those firing now)
  version   print the version

Run "pulse <command> -h" for the flags of a command. Every flag can also be
set through the environment: --http-addr is PULSE_HTTP_ADDR.
`)
}

// newFlagSet returns a flag set whose flags, once defined, can also be set
// through PULSE_* variables; see parseWithEnv.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// envName is the environment twin of a flag: PULSE_ and the name in upper
// case with dashes as underscores.
func envName(flagName string) string {
	return "PULSE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv sets each flag from its environment twin (PULSE_ and the
// flag's name), then parses args, so that a flag on the command line wins
// over the environment.
func parseWithEnv(fs *flag.FlagSet, args []string) error {
	return parseWithEnvPrefix(fs, "PULSE_", args)
}

// secretFlags are the flags that carry secrets (tokens, passwords, URLs
// with credentials). Each also has a _FILE environment twin,
// PULSE_ADMIN_TOKENS_FILE for --admin-tokens: the path of a file holding
// the value, the way container platforms mount secrets.
var secretFlags = map[string]bool{
	"admin-tokens": true, "ingest-tokens": true, "jwt-secret": true, "database-url": true,
	"redis-url": true, "clickhouse-dsn": true, "auth-api-key": true, "realtime-url": true,
	"alert-webhook": true, "alertmanager-url": true, "external": true, "nats-url": true,
	"token": true, "admin-token": true, // pulse loadtest
}

// parseWithEnvPrefix is parseWithEnv with the environment twins named
// prefix + the flag's name in upper case with dashes as underscores. A
// secret flag (secretFlags) may instead be read from the file its
// <twin>_FILE variable names; setting both twins, or naming a file that
// cannot be read, is a usage error naming the variable and the flag, never
// the value.
func parseWithEnvPrefix(fs *flag.FlagSet, prefix string, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		name := prefix + strings.TrimPrefix(envName(f.Name), "PULSE_")
		v, ok := os.LookupEnv(name)
		if path, isFile := os.LookupEnv(name + "_FILE"); isFile && secretFlags[f.Name] {
			if ok {
				err = fmt.Errorf("%w: %s and %s_FILE are both set; give --%s one way", errUsage, name, name, f.Name)
				return
			}
			if v, err = readSecretFile(path); err != nil {
				err = fmt.Errorf("%w: %s_FILE (--%s): %v", errUsage, name, f.Name, err)
				return
			}
			ok = true
		}
		if ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%w: %s: %v", errUsage, name, e)
			}
		}
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	return nil
}

type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "console", "log format: console (coloured on a terminal) or json")
}

func (l *logFlags) logger(w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(l.level)
	if err != nil || l.level == "" {
		return zerolog.Nop(), fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, l.level)
	}
	switch l.format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: !colour(w)}
	default:
		return zerolog.Nop(), fmt.Errorf("%w: --log-format %q: want console or json", errUsage, l.format)
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// colour reports whether console logs to w may carry ANSI colours: only
// on a terminal, and not when NO_COLOR is set (no-color.org).
func colour(w io.Writer) bool {
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil && os.Getenv("TERM") != "dumb"
}

// rulesCmd is `pulse rules check FILE`.
func rulesCmd(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return fmt.Errorf("%w: pulse rules check FILE", errUsage)
	}
	return alerts.Check(args[1], stdout)
}

// alertsCmd is `pulse alerts tail [--nats-url URL] [--severity a,b] [--firing]`.
func alertsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "tail" {
		return fmt.Errorf("%w: pulse alerts tail [--nats-url URL] [--severity critical,page] [--firing]", errUsage)
	}
	fs := newFlagSet("alerts tail", stderr)
	url := fs.String("nats-url", "nats://127.0.0.1:4322", "NATS of the Pulse to watch")
	sev := fs.String("severity", "", "only these severities, comma-separated: info, warning, critical, page")
	firing := fs.Bool("firing", false, "first print the alerts firing now (alerts announce only changes)")
	var nf natsFlags
	nf.register(fs)
	if err := parseWithEnv(fs, args[1:]); err != nil {
		return err
	}
	opts, err := nf.options()
	if err != nil {
		return err
	}
	var sevs []string
	if *sev != "" {
		sevs = strings.Split(*sev, ",")
	}
	nc, err := stream.Connect(*url, "pulse-alerts-tail", opts, zerolog.Nop())
	if err != nil {
		return err
	}
	defer nc.Close()
	return alerts.Tail(ctx, nc, alerts.TailConfig{Severities: sevs, Firing: *firing}, stdout)
}

// natsFlags are the credentials and TLS settings of Pulse's NATS
// connections; every command that connects to NATS registers them.
type natsFlags struct {
	creds, nkey, tokenFile, ca, cert, key string
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed)")
	fs.StringVar(&n.nkey, "nats-nkey", "", "file holding the NATS user's nkey seed")
	fs.StringVar(&n.tokenFile, "nats-token-file", "", "file holding the NATS authorization token")
	fs.StringVar(&n.ca, "nats-ca", "", "PEM CA certificates that sign the NATS server's certificate (turns TLS on)")
	fs.StringVar(&n.cert, "nats-cert", "", "PEM client certificate for mutual TLS with NATS (with --nats-key)")
	fs.StringVar(&n.key, "nats-key", "", "PEM key of --nats-cert")
}

// options checks that every file named is readable and reads the token: a
// missing or unreadable file is a usage error naming the flag.
func (n natsFlags) options() (stream.ClientOptions, error) {
	for _, f := range []struct{ flag, path string }{
		{"nats-creds", n.creds}, {"nats-nkey", n.nkey}, {"nats-ca", n.ca}, {"nats-cert", n.cert}, {"nats-key", n.key},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return stream.ClientOptions{}, fmt.Errorf("%w: --%s: %v", errUsage, f.flag, err)
		}
	}
	o := stream.ClientOptions{CredsFile: n.creds, NKeyFile: n.nkey, CAFile: n.ca, CertFile: n.cert, KeyFile: n.key}
	if n.tokenFile != "" {
		tok, err := readSecretFile(n.tokenFile)
		if err != nil {
			return o, fmt.Errorf("%w: --nats-token-file: %v", errUsage, err)
		}
		o.Token = tok
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	return o, nil
}

// readSecretFile reads a secret from a file, without the line ending an
// editor or `echo` leaves; an empty file is an error.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// clickHouseTLS are the TLS flags of a clickhouse:// DSN, given as the
// DSN's ca=, cert= and key= options.
type clickHouseTLS struct{ ca, cert, key string }

func (c *clickHouseTLS) register(fs *flag.FlagSet) {
	fs.StringVar(&c.ca, "clickhouse-ca", "", "PEM CA certificates of the ClickHouse server's certificate; turns TLS on (the DSN's ca= option)")
	fs.StringVar(&c.cert, "clickhouse-cert", "", "PEM client certificate for ClickHouse (with --clickhouse-key; turns TLS on; the DSN's cert= option)")
	fs.StringVar(&c.key, "clickhouse-key", "", "PEM key of --clickhouse-cert (the DSN's key= option)")
}

// apply is dsn with the flags as its options; a chdb: DSN takes none, an
// unreadable file or a certificate without its key is a usage error
// naming the flag.
func (c clickHouseTLS) apply(dsn string) (string, error) {
	if c == (clickHouseTLS{}) {
		return dsn, nil
	}
	if (c.cert == "") != (c.key == "") {
		return "", fmt.Errorf("%w: --clickhouse-cert and --clickhouse-key go together", errUsage)
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme != "clickhouse" {
		return "", fmt.Errorf("%w: --clickhouse-ca, --clickhouse-cert and --clickhouse-key need a clickhouse:// DSN", errUsage)
	}
	q := u.Query()
	for _, f := range []struct{ flag, opt, path string }{{"clickhouse-ca", "ca", c.ca}, {"clickhouse-cert", "cert", c.cert}, {"clickhouse-key", "key", c.key}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return "", fmt.Errorf("%w: --%s: %v", errUsage, f.flag, err)
		}
		q.Set(f.opt, f.path)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}
