package payment_test

import "github.com/civstack/civstack/internal/emv"

func emvParse(s string) (*emv.Payload, error) { return emv.Parse(s) }
