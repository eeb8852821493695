package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Headers that carry a batch's authentication. The signature covers the
// timestamp as well as the body so a captured batch cannot be replayed
// outside the window with a fresh timestamp.
const (
	HeaderTimestamp = "X-Edgepixel-Timestamp" // unix seconds, decimal
	HeaderSignature = "X-Edgepixel-Signature" // hex HMAC-SHA256
)

// The reasons a receiver refuses a batch with for its signature (the
// aggregator's 401 answer names one as its JSON "reason"), so that a
// sender can tell a wrong secret from a clock out of the window.
const (
	ReasonBadSignature = "bad_signature" // missing or wrong HMAC: ErrBadSignature
	ReasonStale        = "stale"         // timestamp outside the window: ErrStale
)

// Errors from Verify. Both mean "do not store this", but they are counted
// apart: a stale timestamp is usually clock skew or a replay, a bad
// signature a wrong secret or forgery.
var (
	ErrBadSignature = errors.New("batch signature does not match (wrong secret or altered body)")
	ErrStale        = errors.New("batch timestamp outside the accepted window (clock skew or replay)")
)

// Sign returns the signature of body sent at unix time ts.
func Sign(secret []byte, ts int64, body []byte) string {
	return hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	var b [24]byte
	m.Write(strconv.AppendInt(b[:0], ts, 10))
	m.Write([]byte{'\n'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks the headers' values against body. The timestamp must be
// within window of now in either direction.
func Verify(secret []byte, tsHeader, sigHeader string, body []byte, now time.Time, window time.Duration) error {
	// A missing or unreadable stamp is not a clock problem: the batch is
	// simply not signed the way this format requires.
	if tsHeader == "" || sigHeader == "" {
		return fmt.Errorf("%w: missing %s or %s header", ErrBadSignature, HeaderTimestamp, HeaderSignature)
	}
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not unix seconds", ErrBadSignature, HeaderTimestamp)
	}
	got, err := hex.DecodeString(sigHeader)
	if err != nil || !hmac.Equal(got, mac(secret, ts, body)) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return ErrStale
	}
	return nil
}
