package identity

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/civstack/civstack/internal/store/storetest"
)

// TestVerifierPurpose: a verifier's purpose, which citizens read when they
// decide what to share, is up to 300 characters (not bytes) of text with
// line breaks and tabs as its only control characters and no
// bidirectional override; a form's CRLF, and a line or paragraph
// separator from copied text, are kept as LF; what is refused
// leaves the registration as it was.
func TestVerifierPurpose(t *testing.T) {
	for _, e := range storetest.Engines(t) {
		t.Run(e.Name, func(t *testing.T) {
			s, _, _ := testService(t, e, 0)
			ctx := context.Background()
			claims := []string{"pid:given_name"}
			long := strings.Repeat("Ж", 300) // 600 bytes
			v, err := s.RegisterVerifier(ctx, "org-bar", "Blue Door Bar", long, claims)
			if err != nil || v.Purpose != long {
				t.Fatalf("a purpose of 300 characters in 600 bytes: %+v %v", v, err)
			}
			v, err = s.RegisterVerifier(ctx, "org-bar", "Blue Door Bar", "Age check.\u2028Nothing kept.\u2029", claims)
			if err != nil || v.Purpose != "Age check.\nNothing kept." {
				t.Fatalf("a purpose with Unicode's line and paragraph separators: %+v %v", v, err)
			}
			v, err = s.RegisterVerifier(ctx, "org-bar", "Blue Door Bar", " Age check at the door.\r\n\tNothing is kept. ", claims)
			if err != nil || v.Purpose != "Age check at the door.\n\tNothing is kept." {
				t.Fatalf("a purpose over two lines: %+v %v", v, err)
			}
			for _, bad := range []string{long + "Ж", "Age check\x1b[2J", "Age\x00check", "Age \xffcheck", "Age check \u202enoitceted", "\u2067Age check\u2069", "Age\rcheck"} {
				if _, err := s.RegisterVerifier(ctx, "org-bar", "Blue Door Bar", bad, claims); !errors.Is(err, ErrInvalid) {
					t.Errorf("purpose %.20q: %v, want ErrInvalid", bad, err)
				}
			}
			if v, err := s.VerifierByOrg(ctx, "org-bar"); err != nil || v.Purpose != "Age check at the door.\n\tNothing is kept." {
				t.Fatalf("after the refusals: %+v %v", v, err)
			}
		})
	}
}
