// Package cli owns civstack's command line: it parses subcommands and flags
// (each flag also read from a CIVSTACK_* environment variable), wires the
// domain packages together, and turns failures into one line on stderr and a
// non-zero exit status.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/civstack/civstack/internal/text"
)

// Version is the civstack release; the build may override it with -ldflags.
var Version = "0.1.0-dev"

// errUsage marks errors caused by how the command was called (exit status 2).
var errUsage = errors.New("usage")

// env carries the process's outside world, injected for tests.
type env struct {
	stdout, stderr io.Writer
	in             io.Reader // standard input; nil reads as empty
	getenv         func(string) string
	now            func() time.Time
}

func (e *env) stdin() io.Reader {
	if e.in == nil {
		return strings.NewReader("")
	}
	return e.in
}

type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the civstack server (the main job)", runServe},
		{"demo", "seed the demo personas and organisations into a database", runDemo},
		{"keys", "list or rotate the node's signing keys", runKeys},
		{"migrate", "show, apply or undo the database's schema migrations", runMigrate},
		{"backup", "copy a running node's database, keys and health files", runBackup},
		{"restore", "put a backup back, with every node stopped", runRestore},
		{"log", "audit a transparency log: civstack log verify --url URL --key VKEY", runLog},
		{"qr", "decode an EMV merchant QR payload: civstack qr decode PAYLOAD", runQR},
		{"verify", "check offline a health pass or EU DCC (civstack verify HC1:…), an\nSD-JWT, or a downloaded receipt, report or data-access export (FILE)", runVerify},
		{"bench", "benchmarks with their baseline in the same run:\ncivstack bench log|ledger|pay|verify|credential|exchange", runBench},
		{"version", "print the version", func(_ context.Context, e *env, args []string) error {
			if err := newFlags(e, "version", "Prints civstack's version, and the commit and Go release it was built\nfrom where the build recorded them.").parse(args, false); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "civstack", fullVersion())
			return nil
		}},
	}
}

// fullVersion is the release and, where the binary records them, the
// commit and Go release that built it (see describeBuild).
func fullVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	return Version + describeBuild(bi)
}

// describeBuild turns what the Go toolchain records in a binary into
// " (commit 85d21ac3c0de of 2026-12-07T22:30:00Z; go1.26.0)": the commit and
// its time where the build was made in a git checkout (`go build` records
// them unless -buildvcs=false), " with uncommitted changes" where the
// checkout had some, and the Go release always.
func describeBuild(bi *debug.BuildInfo) string {
	var revision, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if revision == "" {
		return fmt.Sprintf(" (%s)", bi.GoVersion)
	}
	commit := "commit " + revision[:min(12, len(revision))]
	if at != "" {
		commit += " of " + at
	}
	if modified {
		commit += " with uncommitted changes"
	}
	return fmt.Sprintf(" (%s; %s)", commit, bi.GoVersion)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `civstack %s: privacy-by-design civic digital infrastructure.

Usage:
  civstack <command> [flags]

Commands:
`, Version)
	for _, c := range commands() {
		// A summary's further lines line up under its first.
		fmt.Fprintf(w, "  %-9s %s\n", c.name, strings.ReplaceAll(c.summary, "\n", "\n"+strings.Repeat(" ", 12)))
	}
	fmt.Fprint(w, `
Run "civstack <command> --help" for a command's flags. Every flag can also be
set through the environment variable named in its help (CIVSTACK_…); a flag on
the command line wins.

Start here:
  civstack serve --demo   a local node with demo people at http://localhost:8080
`)
}

// Main runs the command line and returns the process exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, in: os.Stdin, getenv: os.Getenv, now: time.Now}
	return e.main(ctx, args)
}

func (e *env) main(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = append([]string{"version"}, args[1:]...)
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(e.stderr, "civstack %s: %s\n", c.name, printable(strings.TrimPrefix(err.Error(), errUsage.Error()+": ")))
			return 2
		default:
			fmt.Fprintf(e.stderr, "civstack %s: %s\n", c.name, printable(err.Error()))
			return 1
		}
	}
	fmt.Fprintf(e.stderr, "civstack: unknown command %q (run civstack --help)\n", args[0])
	return 2
}

// printable makes text that may hold what civstack read (a document's or
// pass's fields, an error quoting them) safe to show on a terminal: control
// characters (a newline, a carriage return, an escape sequence's ESC) and
// bidirectional overrides are written as Go escapes (\n, \x1b, \u202e), so
// that nothing read can start a line of its own, rewrite one already shown,
// or reorder it.
func printable(s string) string {
	if !strings.ContainsFunc(s, unprintable) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unprintable(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unprintable: a control character or line separator (text.Control), or a
// bidirectional embedding, override or isolate (text.Reorders). The marks LRM, RLM and ALM stay.
func unprintable(r rune) bool { return text.Control(r) || text.Reorders(r) }

// say prints one line on stdout; printable escapes what its arguments
// hold, so that it stays one line.
func (e *env) say(format string, args ...any) {
	fmt.Fprintln(e.stdout, printable(fmt.Sprintf(format, args...)))
}

// flags is a FlagSet whose defaults come from CIVSTACK_* variables.
type flags struct {
	*flag.FlagSet
	e              *env
	envErr         error
	name, synopsis string
	checks         []func() error // of the values, once parsed (check)
}

func (f *flags) printUsage() {
	fmt.Fprintf(f.e.stdout, "Usage: civstack %s\n\n", f.name)
	if f.synopsis != "" {
		fmt.Fprintf(f.e.stdout, "%s\n\n", f.synopsis)
	}
	if !f.hasFlags() {
		return
	}
	fmt.Fprintf(f.e.stdout, "Flags:\n")
	f.SetOutput(f.e.stdout)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// hasFlags reports whether the command defines any flag.
func (f *flags) hasFlags() bool {
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func newFlags(e *env, name, synopsis string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by main
	fs.Usage = func() {}
	return &flags{FlagSet: fs, e: e, name: name, synopsis: synopsis}
}

func (f *flags) envName(name string) string {
	return "CIVSTACK_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (f *flags) String(name, def, help string) *string {
	if v := f.e.getenv(f.envName(name)); v != "" {
		def = v
	}
	return f.FlagSet.String(name, def, help+" (env "+f.envName(name)+")")
}

func (f *flags) Bool(name string, def bool, help string) *bool {
	if v := f.e.getenv(f.envName(name)); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErr = fmt.Errorf("%w: %s=%q is not true or false", errUsage, f.envName(name), v)
		}
		def = b
	}
	return f.FlagSet.Bool(name, def, help+" (env "+f.envName(name)+")")
}

func (f *flags) Int(name string, def int, help string) *int {
	if v := f.e.getenv(f.envName(name)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErr = fmt.Errorf("%w: %s=%q is not a whole number", errUsage, f.envName(name), v)
		}
		def = n
	}
	return f.FlagSet.Int(name, def, help+" (env "+f.envName(name)+")")
}

func (f *flags) Duration(name string, def time.Duration, help string) *time.Duration {
	if v := f.e.getenv(f.envName(name)); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErr = fmt.Errorf("%w: %s=%q is not a duration such as 12h", errUsage, f.envName(name), v)
		}
		def = d
	}
	return f.FlagSet.Duration(name, def, help+" (env "+f.envName(name)+")")
}

// check adds a test of the flags' values, run once they are parsed: what
// it refuses is a usage error, told before the command does anything.
func (f *flags) check(c func() error) { f.checks = append(f.checks, c) }

// DB defines the --db flag: empty, or a PostgreSQL URL (anything else is
// refused as a usage error, never as an unavailable database).
func (f *flags) DB(help string) *string {
	db := f.String("db", "", help)
	f.check(func() error {
		if u, err := url.Parse(*db); *db != "" && (err != nil || u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return errors.New("--db must be a PostgreSQL URL, such as postgres://user:pass@host:5432/db")
		}
		return nil
	})
	return db
}

// parseWords parses args whose flags may come before, between or after
// its words (keys list --data DIR, keys --data DIR list), and returns the
// words: Go's flag package alone stops at the first word and leaves the
// flags after it unread.
func (f *flags) parseWords(args []string) ([]string, error) {
	var words []string
	for {
		if err := f.parse(args, true); err != nil {
			return nil, err
		}
		rest := f.Args()
		if len(rest) == 0 {
			return words, nil
		}
		words, args = append(words, rest[0]), rest[1:]
	}
}

// parse parses args; extra positional arguments are a usage error unless
// allowArgs.
func (f *flags) parse(args []string, allowArgs bool) error {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.printUsage()
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if f.envErr != nil {
		return f.envErr
	}
	for _, c := range f.checks {
		if err := c(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if !allowArgs && f.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, f.Arg(0))
	}
	return nil
}
