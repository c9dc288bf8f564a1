package demo_test

import (
	"testing"

	"github.com/civstack/civstack/internal/demo"
	"github.com/civstack/civstack/internal/registry"
)

// TestRoles: a persona's line names role and organisation, once where the
// organisation's name is its role's.
func TestRoles(t *testing.T) {
	for _, c := range []struct {
		ms   []registry.Membership
		want string
	}{
		{nil, "Citizen"},
		{[]registry.Membership{{Role: registry.Agency, OrgName: "City Tax Office"}}, "Agency, City Tax Office"},
		{[]registry.Membership{{Role: registry.DPA, OrgName: "Data Protection Authority"}}, "Data Protection Authority"},
		{[]registry.Membership{{Role: registry.Merchant, OrgName: "Rossi Groceries"}, {Role: registry.Partner, OrgName: "Metro Transit"}},
			"Merchant, Rossi Groceries; Rewards partner, Metro Transit"},
	} {
		if got := demo.Roles(c.ms); got != c.want {
			t.Errorf("Roles(%v) = %q, want %q", c.ms, got, c.want)
		}
	}
}
