package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"

	"github.com/civstack/civstack/internal/store"
)

const migrateSynopsis = `migrate status [--data DIR | --db URL]
       civstack migrate up [--data DIR | --db URL]
       civstack migrate down --to VERSION [--data DIR | --db URL]

status lists the schema migrations this civstack knows and which the
database has. up applies the missing ones (serve does that itself when it
starts). down undoes, newest first, every migration after VERSION, so that
an older civstack, which knows migrations only up to VERSION, can run on
the database again: stop every node first (down refuses while one runs,
and no node starts until it has finished). Each migration is undone in one
transaction, and the data a migration moved is moved back (access records
stay access records in the older schema); what only the newer schema holds
is dropped. Take a backup first.`

func runMigrate(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, migrateSynopsis, "")
	storage := addStorageFlags(f)
	to := f.Int("to", -1, "down: the version to go back to (see migrate status)")
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	if err := f.parse(args, sub == ""); err != nil {
		return err
	}
	if sub == "" && f.NArg() > 0 {
		sub = f.Arg(0)
		if f.NArg() > 1 {
			return fmt.Errorf("%w: unexpected argument %q", errUsage, f.Arg(1))
		}
	}
	switch sub {
	case "status", "up", "down":
	case "":
		return fmt.Errorf("%w: say status, up or down (see civstack migrate --help)", errUsage)
	default:
		return fmt.Errorf("%w: unknown migrate command %q (want status, up or down)", errUsage, sub)
	}
	if sub == "down" && *to < 0 {
		return fmt.Errorf("%w: migrate down needs --to VERSION (see civstack migrate status)", errUsage)
	}
	if sub != "down" && *to >= 0 {
		return fmt.Errorf("%w: --to is for migrate down", errUsage)
	}
	if err := storage.existing(); err != nil {
		switch sub {
		case "status": // what a first start would apply, without making the file
			fmt.Fprintf(e.stdout, "%s does not exist yet; civstack migrate up (or serve) makes it.\n", storage.describe())
			return printMigrations(e, store.KnownMigrations(store.SQLite), 0)
		case "down":
			return err
		}
	}
	db, err := store.Open(ctx, store.Options{URL: *storage.db, DataDir: *storage.data, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "up":
		before, err := db.SchemaVersion(ctx)
		if err != nil {
			before = 0 // a new database has no version table yet
		}
		if err := db.Migrate(ctx); err != nil {
			return err
		}
		after, err := db.SchemaVersion(ctx)
		if err != nil {
			return err
		}
		if after == before {
			fmt.Fprintf(e.stdout, "%s is up to date (version %d).\n", storage.describe(), after)
		} else {
			fmt.Fprintf(e.stdout, "%s migrated from version %d to %d.\n", storage.describe(), before, after)
		}
		return nil
	case "down":
		release, err := nodesStopped(ctx, db, storage)
		if err != nil {
			return err
		}
		defer release()
		undone, err := db.MigrateDown(ctx, int64(*to))
		for _, v := range undone {
			fmt.Fprintf(e.stdout, "undid migration %d\n", v)
		}
		if err != nil {
			return err
		}
		if len(undone) == 0 {
			fmt.Fprintf(e.stdout, "%s is already at version %d or older; nothing to undo.\n", storage.describe(), *to)
			return nil
		}
		fmt.Fprintf(e.stdout, "%s is at version %d: an older civstack that knows migrations up to %d can run on it.\n", storage.describe(), *to, *to)
		return nil
	}
	ms, newer, err := db.Migrations(ctx)
	if err != nil {
		return err
	}
	return printMigrations(e, ms, newer)
}

// printMigrations is migrate status's table and summary; newer, if not 0,
// is the database's version past every migration this civstack knows.
func printMigrations(e *env, ms []store.Migration, newer int64) error {
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tMIGRATION\tAPPLIED")
	pending := 0
	for _, m := range ms {
		applied := "pending"
		if m.Applied {
			applied = m.AppliedAt.UTC().Format("2006-01-02 15:04:05")
		} else {
			pending++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, applied)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case newer > 0:
		fmt.Fprintf(e.stdout, "The database is at version %d, newer than this civstack: run the newer one.\n", newer)
	case pending > 0:
		fmt.Fprintf(e.stdout, "%d pending: civstack migrate up (or serve) applies them.\n", pending)
	default:
		fmt.Fprintln(e.stdout, "Up to date.")
	}
	return nil
}
