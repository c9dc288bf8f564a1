package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/registry"
)

func runDemo(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "demo [flags]", "Seeds the demo personas and organisations into a database (serve --demo does\nthis too). A database that holds real data is refused.")
	storage := addStorageFlags(f)
	if err := f.parse(args, false); err != nil {
		return err
	}
	n, err := openNode(ctx, e, storage, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer n.close()
	if err := n.reg.EnsureMode(ctx, registry.ModeDemo); errors.Is(err, registry.ErrModeMismatch) {
		return fmt.Errorf("this database holds real data; demo data goes only into a fresh --data or --db")
	} else if err != nil {
		return err
	}
	if err := demo.Seed(ctx, n.reg); err != nil {
		return err
	}
	people, err := n.reg.DemoPeople(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Demo data ready in %s: %d personas, %d organisations.\n", storage.describe(), len(people), len(demo.Orgs))
	return nil
}
