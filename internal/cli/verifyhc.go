package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/civstack/civstack/internal/dcc"
	"github.com/civstack/civstack/internal/healthpass"
)

// hcPrefix recognises an HCERT-style context identifier, so that "HC2:…"
// or "LT1:…" reach the verifier and fail its prefix check clearly instead
// of being opened as a file.
var hcPrefix = regexp.MustCompile(`^\s*[A-Z]{2}[0-9A-Z]:`)

func isHC(arg string) bool { return hcPrefix.MatchString(arg) }

type hcOptions struct {
	trust, at  string
	decodeOnly bool
	data       string
	json       bool
}

// healthFiles are where a node keeps its verifier's cache.
func healthFiles(data string) (trustList, rules string) {
	return filepath.Join(data, "health", "trust-list.json"), filepath.Join(data, "health", "rules.json")
}

func verifyHC(e *env, payload string, o hcOptions) error {
	at := e.now()
	if o.at != "" {
		t, err := time.Parse(time.RFC3339, o.at)
		if err != nil {
			return fmt.Errorf("%w: --at %q is not an RFC 3339 time", errUsage, o.at)
		}
		at = t
	}
	v := &healthpass.Verifier{}
	if !o.decodeOnly {
		tlPath, rulesPath := healthFiles(o.data)
		path := o.trust
		if path == "" {
			path = tlPath
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if o.trust == "" && errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("no trust list at %s: give --trust FILE or --data DIR of a node that has served (or --decode-only to read the pass without checking its signature)", path)
			}
			return fmt.Errorf("trust: %w", err)
		}
		if v.Trust, v.TrustInfo, err = healthpass.LoadTrust(b); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if rb, err := os.ReadFile(rulesPath); err == nil {
			if v.Rules, err = healthpass.ParseRules(rb); err != nil {
				return fmt.Errorf("%s: %w", rulesPath, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rules: %w", err)
		}
	}
	verdict, _ := v.Verify(payload, at, o.decodeOnly)
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(verdict); err != nil {
			return err
		}
	} else {
		for _, c := range verdict.Checks {
			mark := map[dcc.Status]string{dcc.StatusPass: "ok  ", dcc.StatusFail: "FAIL", dcc.StatusNotRun: "--  "}[c.Status]
			line := fmt.Sprintf("%s %s", mark, c.Check)
			if c.Detail != "" {
				line += ": " + c.Detail
			}
			e.say("%s", line)
		}
		if v.TrustInfo != "" {
			e.say("trust: %s", v.TrustInfo)
		}
		if v.Rules != nil {
			e.say("rules: %s %s", v.Rules.Name, v.Rules.Version)
		}
	}
	if !verdict.Valid {
		if verdict.Problem == "" {
			verdict.Problem = "a check did not run"
		}
		return fmt.Errorf("not valid: %s", verdict.Problem)
	}
	if !o.json {
		what := verdict.Kind
		if verdict.Colour != "" {
			what += " " + verdict.Colour
		}
		if o.decodeOnly {
			e.say("decoded (signature not checked): %s for %s %s, born %s", what, verdict.GivenName, verdict.FamilyName, verdict.DOB)
		} else {
			e.say("valid: %s for %s %s, born %s, until %s", what, verdict.GivenName, verdict.FamilyName, verdict.DOB, verdict.Expires)
		}
	}
	return nil
}
