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
                                     key last per purpose) and its secrets'
                                     fingerprints; makes what is missing
       civstack keys rotate PURPOSE  add a new active key for PURPOSE (log
                                     or document); older keys stay for
                                     verification. Restart serve to use it.`

func runKeys(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, keysSynopsis, "Manages the keys in DATA/keys (PKCS#8 PEM files and secrets, mode 0600). A\nrotation is recorded in the transparency log of the node's database (--data\nor --db). Every node on one database needs the same DATA/keys: run keys list\nonce and copy the directory to each.")
	storage := addStorageFlags(f)
	data := storage.data
	rest, err := f.parseWords(args)
	if err != nil {
		return err
	}
	switch {
	case len(rest) == 0:
		return fmt.Errorf("%w: say list or rotate (see civstack keys --help)", errUsage)
	case rest[0] == "list" && len(rest) > 1:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[1])
	case rest[0] == "rotate" && len(rest) != 2:
		return fmt.Errorf("%w: keys rotate needs a purpose: log or document", errUsage)
	case rest[0] != "list" && rest[0] != "rotate":
		return fmt.Errorf("%w: unknown keys command %q (want list or rotate)", errUsage, rest[0])
	}
	if rest[0] == "rotate" {
		if !slices.Contains(keyring.Purposes, keyring.Purpose(rest[1])) {
			return fmt.Errorf("%w: unknown key purpose %q (want log or document)", errUsage, rest[1])
		}
		if err := storage.existing(); err != nil {
			return err
		}
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
		if err := tw.Flush(); err != nil {
			return err
		}
		// The secrets, by a fingerprint that reveals nothing of them: every
		// node on one database shows the same (serve checks it).
		fmt.Fprintln(e.stdout)
		tw = tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SECRET\tFINGERPRINT")
		for _, name := range nodeSecrets {
			b, err := ring.Secret(name)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s.secret\t%s\n", name, keyring.Fingerprint(name, b))
		}
		return tw.Flush()
	case "rotate":
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
