package pixel

// The HTTP methods and status codes Serve uses (RFC 9110 sections 9 and
// 15), declared here rather than taken from net/http: importing net/http
// brings crypto/tls and its elliptic-curve tables into every module built
// from this package, and the Cloudflare worker (wrangler/) must not carry
// them (TinyGo's compile-time interpreter spends minutes in their
// initialisers). Platforms compare these with net/http's in their tests.
const (
	methodGet     = "GET"
	methodHead    = "HEAD"
	methodOptions = "OPTIONS"
	methodPost    = "POST"
)

const (
	statusOK                    = 200
	statusNoContent             = 204
	statusNotModified           = 304
	statusBadRequest            = 400
	statusForbidden             = 403
	statusNotFound              = 404
	statusMethodNotAllowed      = 405
	statusRequestEntityTooLarge = 413
	statusUnsupportedMediaType  = 415
	statusTooManyRequests       = 429
	statusInternalServerError   = 500
	statusServiceUnavailable    = 503
)

// statusText is the reason phrase of a status Serve rejects with, as
// net/http's StatusText gives it, "" for any other.
func statusText(code int) string {
	switch code {
	case statusBadRequest:
		return "Bad Request"
	case statusForbidden:
		return "Forbidden"
	case statusNotFound:
		return "Not Found"
	case statusMethodNotAllowed:
		return "Method Not Allowed"
	case statusRequestEntityTooLarge:
		return "Request Entity Too Large"
	case statusUnsupportedMediaType:
		return "Unsupported Media Type"
	case statusTooManyRequests:
		return "Too Many Requests"
	case statusInternalServerError:
		return "Internal Server Error"
	case statusServiceUnavailable:
		return "Service Unavailable"
	}
	return ""
}
