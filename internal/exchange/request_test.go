package exchange

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/store"
	"github.com/civstack/civstack/internal/store/storetest"
)

// TestTextLimits: names, labels, values, an officer's name and a legal
// basis are limited in characters, not bytes (a name in Chinese script of
// 40 characters is 120 bytes and may ask), and each limit says which one
// was crossed.
func TestTextLimits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ex, _, _ := auditExchange(t, db, 0)
		svc := func(name, label string, fields int) error {
			s := Service{ID: "register", Name: name}
			for i := range fields {
				s.Fields = append(s.Fields, Field{Name: fmt.Sprintf("f%d", i), Label: label, Type: "text"})
			}
			_, err := ex.PublishService(ctx, "holder", s)
			return err
		}
		for _, c := range []struct {
			name, label string
			fields      int
			want        string
		}{
			{strings.Repeat("Ж", 101), "Адрес", 1, "a name of up to 100 characters"},
			{"Реестр", strings.Repeat("Ж", 101), 1, "a label of up to 100 characters"},
			{"Реестр", " ", 1, "a label of up to 100 characters"},
			{"Реестр", "Адрес", 101, "1 to 100 fields"},
			{"Реестр", "Адрес", 0, "1 to 100 fields"},
		} {
			if err := svc(c.name, c.label, c.fields); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("service %.10q, label %.10q, %d fields: want %q, got %v", c.name, c.label, c.fields, c.want, err)
			}
		}
		if err := svc(strings.Repeat("Ж", 100), strings.Repeat("Ж", 100), 100); err != nil {
			t.Fatalf("a service at every limit (in Cyrillic, two bytes a character): %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": strings.Repeat("Ж", 1000)}); err != nil {
			t.Fatalf("a value of 1,000 characters: %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "register", "p1", map[string]string{"f0": strings.Repeat("Ж", 1001)}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "longer than 1000 characters") {
			t.Fatalf("a value of 1,001 characters: %v", err)
		}
		long := strings.Repeat("§", 200) // 400 bytes
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long, Retention: Day}, "t"); err != nil {
			t.Fatalf("a legal basis of 200 characters: %v", err)
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long + "x", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("a legal basis of 201 characters: %v", err)
		}
		if _, err := ex.CreatePolicy(ctx, Policy{Requester: "tax", Service: "income", Fields: []string{"income", "income"}, Purpose: "TWICE", LegalBasis: "§1", Retention: Day}, "t"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `names the field "income" twice`) {
			t.Fatalf("a policy naming a field twice: %v", err)
		}
		if err := ex.SetValues(ctx, "holder", "income", "p1", map[string]string{"income": "7"}); err != nil {
			t.Fatal(err)
		}
		ask := Ask{Requester: "tax", Officer: strings.Repeat("王", 40), Citizen: "p1", Service: "income", Fields: []string{"income"}, Purpose: "LONG", LegalBasis: long}
		if r, err := ex.Submit(ctx, ask); err != nil || r.State != Released {
			t.Fatalf("an officer of 40 characters in 120 bytes: %+v %v", r, err)
		}
		for _, c := range []struct {
			change func(*Ask)
			want   string
		}{
			{func(a *Ask) { a.Officer = strings.Repeat("o", 101) }, "officer's name is longer than 100 characters"},
			{func(a *Ask) { a.Officer = strings.Repeat("😀", 70) }, "officer's name is longer than 100 characters"}, // 280 bytes
			{func(a *Ask) { a.LegalBasis = long + "x" }, "legal basis is longer than 200 characters"},
			{func(a *Ask) { a.Purpose = strings.Repeat("P", 41) }, "purpose code is at most 40 characters"},
			{func(a *Ask) { a.Officer = " " }, "a request names the officer"},
		} {
			a := ask
			c.change(&a)
			if _, err := ex.Submit(ctx, a); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("want %q, got %v", c.want, err)
			}
		}
	})
}
