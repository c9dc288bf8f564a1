package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"text/tabwriter"

	"github.com/civstack/civstack/internal/keyring"
)

const keysSynopsis = `keys list             show the node's signing keys (the active
                                     key last per purpose)
       civstack keys rotate PURPOSE  add a new active key for PURPOSE (log
                                     or document); older keys stay for
                                     verification. Restart serve to use it.`

func runKeys(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, keysSynopsis, "Manages the keys in DATA/keys (PKCS#8 PEM files, mode 0600). A rotation is\nrecorded in the transparency log of the node's database (--data or --db).")
	storage := addStorageFlags(f)
	data := storage.data
	if err := f.parse(args, true); err != nil {
		return err
	}
	rest := f.Args()
	if len(rest) == 0 {
		return fmt.Errorf("%w: say list or rotate (see civstack keys --help)", errUsage)
	}
	ring, err := keyring.Open(filepath.Join(*data, "keys"), e.now, rand.Reader)
	if err != nil {
		return err
	}
	switch rest[0] {
	case "list":
		tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PURPOSE\tALGORITHM\tID\tCREATED\tACTIVE")
		for _, k := range ring.All() {
			active := ""
			if ring.Active(k.Purpose) == k {
				active = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Purpose, k.Algorithm, k.ID, k.CreatedAt.Format("2006-01-02 15:04:05"), active)
		}
		return tw.Flush()
	case "rotate":
		if len(rest) != 2 {
			return fmt.Errorf("%w: keys rotate needs a purpose: log or document", errUsage)
		}
		if !slices.Contains(keyring.Purposes, keyring.Purpose(rest[1])) {
			return fmt.Errorf("unknown key purpose %q (want log or document)", rest[1])
		}
		n, err := openNode(ctx, e, storage, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer n.close()
		k, err := n.keys.Rotate(keyring.Purpose(rest[1]))
		if err != nil {
			return err
		}
		if err := n.logKeys(ctx, e.now()); err != nil {
			return fmt.Errorf("the new key %s is made, but recording it in the log failed: %w", k.ID, err)
		}
		fmt.Fprintf(e.stdout, "New %s key %s (%s). Restart civstack serve to sign with it.\n", k.Purpose, k.ID, k.Algorithm)
		return nil
	}
	return fmt.Errorf("%w: unknown keys command %q (want list or rotate)", errUsage, rest[0])
}
