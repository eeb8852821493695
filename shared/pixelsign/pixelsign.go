// Package pixelsign signs pixel URLs and verifies them at the edge, so a
// site can count only the hits of pixels it issued (an email campaign, an
// ad) and reject forged or replayed-after-expiry ones.
//
// A signed pixel URL carries two extra query parameters:
//
//	exp  the expiry, in Unix seconds (decimal)
//	sig  the signature: base64url (RFC 4648 section 5, no padding) of the
//	     first 16 bytes of HMAC-SHA-256 (RFC 2104, FIPS 180-4) under the
//	     site's key of the message below
//
// The message binds the site, the expiry and every other parameter:
//
//	"edgepixel-pixel-v1\n" then, for each parameter other than sig sorted
//	by decoded name then decoded value, uvarint(len(name)) name
//	uvarint(len(value)) value
//
// Names and values are compared after percent-decoding (application/
// x-www-form-urlencoded, '+' as space), so a mailer that re-encodes a
// URL does not break its signature, and length prefixes make every
// message unambiguous. The site is the `site` parameter itself, so it is
// signed like any other; a URL without one does not verify. A parameter
// added, removed or changed after signing, including `exp`, makes the
// signature wrong.
//
// An event POST is signed the same way, by its URL: the site signs the
// query of its endpoint (POST /e?site=S, which becomes
// /e?exp=E&site=S&sig=X) and the page posts its events there (the
// tracker script takes it as its data-signed attribute). The body is not
// signed, since a page's script cannot hold the key: the signature says
// that the site issued that endpoint URL before E, and the edge holds
// each event's site to the URL's site (edge/pixel).
//
// A signed query may bind its use to the client it was issued to:
//
//	cip  an IP address or prefix in CIDR notation (RFC 4632, RFC 4291
//	     section 2.3), e.g. 203.0.113.0/24; the edge counts the hit as
//	     verified only from a client address inside it (IPv4-mapped IPv6
//	     addresses compare as IPv4), and a malformed value never matches
//
// so a signature copied out of one visitor's page does not verify from
// elsewhere (ClientAllowed).
//
// Keys are per site, at least 16 bytes, kept in a secret store. To
// rotate, verify with the new and the previous key (Verify takes both)
// until the old pixels have expired.
package pixelsign

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Query parameter names.
const (
	ParamSig    = "sig"
	ParamExpiry = "exp"
	ParamSite   = "site"
	ParamClient = "cip"
)

const (
	domain = "edgepixel-pixel-v1\n"
	// sigBytes is the truncated MAC length: 128 bits, as NIST SP 800-107
	// section 5.3.4 allows for HMAC.
	sigBytes = 16
	// MinKeyBytes is the shortest key Sign and Verify accept.
	MinKeyBytes = 16
	// MaxParams bounds the parameters a signed URL may carry; more is
	// ErrMalformed, so a hostile query costs a bounded sort.
	MaxParams = 64
)

// Errors of Verify. Each maps to one drop reason at the edge.
var (
	ErrUnsigned  = errors.New("pixelsign: no signature")        // unsigned
	ErrMalformed = errors.New("pixelsign: malformed signature") // bad_pixel_signature
	ErrBadSig    = errors.New("pixelsign: wrong signature")     // bad_pixel_signature
	ErrExpired   = errors.New("pixelsign: expired")             // expired_pixel
	ErrShortKey  = errors.New("pixelsign: key shorter than 16 bytes")
)

// Key returns a site's signing key as stored (a secret store's entry, a
// Worker's variable, a key file): without the white space around it,
// which an editor or echo adds. The edge, the Worker and edgepixel-sign
// all read it so: the bytes signed with are the bytes verified with.
func Key(stored []byte) []byte { return bytes.TrimSpace(stored) }

// Sign returns query (a URL's raw query, without '?') with exp set to
// expiry (Unix seconds) and sig appended. Any sig or exp already in query
// is replaced. query must hold exactly one non-empty site parameter; Verify refuses
// a query with none or several, as the site would be ambiguous.
func Sign(key []byte, query string, expiry int64) (string, error) {
	if len(key) < MinKeyBytes {
		return "", ErrShortKey
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return "", err
	}
	if len(v[ParamSite]) != 1 || v.Get(ParamSite) == "" {
		return "", errors.New("pixelsign: the query needs exactly one non-empty site parameter")
	}
	v.Del(ParamSig)
	v.Set(ParamExpiry, strconv.FormatInt(expiry, 10))
	ps := make([]param, 0, len(v))
	for name, values := range v {
		for _, value := range values {
			ps = append(ps, param{name, value})
		}
	}
	if len(ps) > MaxParams {
		return "", errors.New("pixelsign: too many parameters")
	}
	mac := hmac.New(sha256.New, key)
	sum := message(mac, ps)
	return v.Encode() + "&" + ParamSig + "=" + base64.RawURLEncoding.EncodeToString(sum), nil
}

// SignURL signs rawURL's query as Sign does and returns the whole URL.
func SignURL(key []byte, rawURL string, expiry int64) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	q, err := Sign(key, u.RawQuery, expiry)
	if err != nil {
		return "", err
	}
	u.RawQuery = q
	return u.String(), nil
}

// Verify checks rawQuery's signature at time now (Unix seconds) against
// each of keys (the current key and, while rotating, the previous one).
// It returns nil, ErrUnsigned (no sig parameter), ErrMalformed,
// ErrBadSig or ErrExpired (a valid signature whose exp is before now).
// Keys shorter than MinKeyBytes never verify.
func Verify(rawQuery string, now int64, keys ...[]byte) error {
	var ps []param
	var sig string
	var haveSig, haveSite bool
	expiry := int64(-1)
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err1 := url.QueryUnescape(rawName)
		value, err2 := url.QueryUnescape(rawValue)
		if err1 != nil || err2 != nil {
			return ErrMalformed
		}
		switch name {
		case ParamSig:
			if haveSig {
				return ErrMalformed
			}
			sig, haveSig = value, true
			continue
		case ParamExpiry:
			if expiry >= 0 {
				return ErrMalformed
			}
			e, err := strconv.ParseInt(value, 10, 64)
			if err != nil || e < 0 {
				return ErrMalformed
			}
			expiry = e
		case ParamSite:
			if haveSite || value == "" {
				return ErrMalformed
			}
			haveSite = true
		}
		if len(ps) == MaxParams {
			return ErrMalformed
		}
		ps = append(ps, param{name, value})
	}
	if !haveSig {
		return ErrUnsigned
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sigBytes || expiry < 0 || !haveSite {
		return ErrMalformed
	}
	verified := false
	for _, key := range keys {
		if len(key) < MinKeyBytes {
			continue
		}
		if hmac.Equal(message(hmac.New(sha256.New, key), ps), got) {
			verified = true
			break
		}
	}
	switch {
	case !verified:
		return ErrBadSig
	case expiry < now:
		return ErrExpired
	}
	return nil
}

type param struct{ name, value string }

// message sorts ps and returns the truncated MAC of the signed message.
func message(mac hash.Hash, ps []param) []byte {
	slices.SortFunc(ps, func(a, b param) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
	mac.Write([]byte(domain))
	var n [binary.MaxVarintLen64]byte
	for _, p := range ps {
		mac.Write(n[:binary.PutUvarint(n[:], uint64(len(p.name)))])
		mac.Write([]byte(p.name))
		mac.Write(n[:binary.PutUvarint(n[:], uint64(len(p.value)))])
		mac.Write([]byte(p.value))
	}
	return mac.Sum(nil)[:sigBytes]
}

// ClientAllowed reports whether a hit from client may use the signed
// query rawQuery: true when the query binds no client (no cip, or an
// empty one), else whether client is inside cip. Call it after Verify:
// only a verified cip is the site's word.
func ClientAllowed(rawQuery string, client netip.Addr) bool {
	cip := ""
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		name, value, _ := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); err != nil || n != ParamClient {
			continue
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return false
		}
		cip = v
		break
	}
	if cip == "" {
		return true
	}
	p, err := parseCIP(cip)
	if err != nil || !client.IsValid() {
		return false
	}
	return p.Contains(client.Unmap())
}

// CheckClient reports whether cip, a cip parameter's value, is one a
// client can be in: an IP address or a CIDR range. A URL signed with
// another is refused on every hit (bad_pixel_signature); edgepixel-sign
// refuses to sign it. Sign does not check, so that a test can make one.
func CheckClient(cip string) error {
	if _, err := parseCIP(cip); err != nil {
		return fmt.Errorf("cip %q is not an IP address or a CIDR range (e.g. 203.0.113.7 or 203.0.113.0/24)", cip)
	}
	return nil
}

// parseCIP reads a cip: an address (its own /32 or /128) or a CIDR
// prefix, an IPv4-mapped IPv6 one as its IPv4 prefix, masked.
func parseCIP(cip string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.IndexByte(cip, '/') >= 0 {
		p, err = netip.ParsePrefix(cip)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(cip); err == nil {
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
	}
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
	}
	return p.Masked(), nil
}
