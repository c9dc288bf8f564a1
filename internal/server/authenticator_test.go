package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// softAuthenticator is a software passkey authenticator for tests that do
// not drive a browser: it answers WebAuthn creation and request options the
// way a platform authenticator does (packed "none" attestation, ES256 keys,
// resident credentials, user verification).
type softAuthenticator struct {
	rpID, origin string
	creds        []*softCredential
}

type softCredential struct {
	id      []byte
	key     *ecdsa.PrivateKey
	user    []byte
	counter uint32
}

var b64 = base64.RawURLEncoding

func (a *softAuthenticator) clientData(typ, challenge string) []byte {
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.origin, "crossOrigin": false})
	return cd
}

func (a *softAuthenticator) authData(flags byte, counter uint32, attested []byte) []byte {
	rp := sha256.Sum256([]byte(a.rpID))
	out := append([]byte{}, rp[:]...)
	out = append(out, flags)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, attested...)
}

// create answers {"publicKey": PublicKeyCredentialCreationOptions}.
func (a *softAuthenticator) create(options json.RawMessage) (map[string]any, error) {
	var o struct {
		PublicKey struct {
			Challenge string                `json:"challenge"`
			RP        struct{ ID string }   `json:"rp"`
			User      struct{ ID string }   `json:"user"`
			Exclude   []struct{ ID string } `json:"excludeCredentials"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, err
	}
	for _, ex := range o.PublicKey.Exclude {
		for _, c := range a.creds {
			if ex.ID == b64.EncodeToString(c.id) {
				return nil, fmt.Errorf("InvalidStateError: credential excluded")
			}
		}
	}
	if o.PublicKey.RP.ID != a.rpID {
		return nil, fmt.Errorf("rp id %q, authenticator is for %q", o.PublicKey.RP.ID, a.rpID)
	}
	user, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil {
		return nil, err
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := make([]byte, 16)
	rand.Read(id)
	c := &softCredential{id: id, key: key, user: user}
	a.creds = append(a.creds, c)

	raw, err := key.PublicKey.Bytes() // 0x04 ‖ X ‖ Y
	if err != nil {
		return nil, err
	}
	x, y := raw[1:33], raw[33:]
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		return nil, err
	}
	attested := make([]byte, 16) // AAGUID: zero
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(id)))
	attested = append(attested, id...)
	attested = append(attested, cose...)
	ad := a.authData(0x01|0x04|0x40, 0, attested) // UP, UV, AT
	att, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": ad})
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"id": b64.EncodeToString(id), "rawId": b64.EncodeToString(id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(a.clientData("webauthn.create", o.PublicKey.Challenge)),
			"attestationObject": b64.EncodeToString(att),
			"transports":        []string{"internal"},
		},
	}, nil
}

// get answers {"publicKey": PublicKeyCredentialRequestOptions} with the
// newest credential (or the one allowCredentials names).
func (a *softAuthenticator) get(options json.RawMessage) (map[string]any, error) {
	var o struct {
		PublicKey struct {
			Challenge string                `json:"challenge"`
			RPID      string                `json:"rpId"`
			Allow     []struct{ ID string } `json:"allowCredentials"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, err
	}
	if len(a.creds) == 0 {
		return nil, fmt.Errorf("NotAllowedError: no credential")
	}
	c := a.creds[len(a.creds)-1]
	c.counter++
	ad := a.authData(0x01|0x04, c.counter, nil)
	cd := a.clientData("webauthn.get", o.PublicKey.Challenge)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, digest[:])
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"id": b64.EncodeToString(c.id), "rawId": b64.EncodeToString(c.id), "type": "public-key",
		"clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON":    b64.EncodeToString(cd),
			"authenticatorData": b64.EncodeToString(ad),
			"signature":         b64.EncodeToString(sig),
			"userHandle":        b64.EncodeToString(c.user),
		},
	}, nil
}
