package healthpass

import (
	"time"

	"github.com/civstack/civstack/internal/dcc"
)

// Verifier checks passes and DCCs offline against a cached trust list and
// rules. It reads nothing and writes nothing: no database, no log, no
// network.
type Verifier struct {
	Trust     *dcc.Trust
	TrustInfo string // what the trust list is, shown beside results
	Rules     *Rules // nil: the rules check passes without rules
}

// Verdict is what a verifier shows: only what it needs.
type Verdict struct {
	Valid        bool         `json:"valid"`
	Kind         string       `json:"kind,omitempty"`  // "health code", "vaccination", "test", "recovery"
	Colour       string       `json:"color,omitempty"` // health codes
	FamilyName   string       `json:"family_name,omitempty"`
	GivenName    string       `json:"given_name,omitempty"`
	DOB          string       `json:"date_of_birth,omitempty"`
	Expires      string       `json:"expires,omitempty"`
	RulesVersion string       `json:"rules_version,omitempty"`
	Checks       []dcc.Result `json:"checks"`
	Problem      string       `json:"problem,omitempty"`
}

// Verify runs every check and reduces the result to a verdict. Names and
// dates are filled only when the signature verified.
func (v *Verifier) Verify(payload string, at time.Time, decodeOnly bool) (*Verdict, *dcc.Report) {
	opts := dcc.Options{Trust: v.Trust, At: at, DecodeOnly: decodeOnly}
	if v.Rules != nil {
		opts.Rules = func(doc map[string]any, c *dcc.Claims, _ *dcc.Signer) error {
			if c.HealthCode {
				return nil // the code's colour is the verdict; its rules version is shown
			}
			return v.Rules.CheckCertificate(doc, dcc.CertType(doc), at)
		}
	}
	r := dcc.Verify(payload, opts)
	out := &Verdict{Valid: r.Valid(), Checks: r.Results}
	if f := r.Failed(); f != nil {
		out.Problem = f.Detail
	}
	if r.Signer == nil && !decodeOnly {
		return out, r
	}
	if r.Doc != nil {
		if nam, ok := r.Doc["nam"].(map[string]any); ok {
			out.FamilyName, _ = nam["fn"].(string)
			out.GivenName, _ = nam["gn"].(string)
		}
		out.DOB, _ = r.Doc["dob"].(string)
		if r.Claims.HealthCode {
			out.Kind = "health code"
			out.Colour, _ = r.Doc["st"].(string)
			out.RulesVersion, _ = r.Doc["rv"].(string)
		} else {
			out.Kind = map[string]string{"v": "vaccination", "t": "test", "r": "recovery"}[dcc.CertType(r.Doc)]
			if v.Rules != nil {
				out.RulesVersion = v.Rules.Version
			}
		}
		out.Expires = r.Claims.Expires.Format(time.RFC3339)
	}
	return out, r
}
