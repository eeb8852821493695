package pop

import "net/netip"

// The HTTP messages behind request and response handles
// (fastly_http_req.go, fastly_http_resp.go).

// reqObj is the object behind a request handle: the client request of the
// current execution, or one the guest builds to send to a backend.
type reqObj struct {
	method  string
	uri     string
	version uint32
	header  headerList
	// manualFraming: the guest's Content-Length / Transfer-Encoding
	// headers are used as given instead of being derived from the body.
	manualFraming bool
	autoGzip      bool
	// ds is set on the client request of a downstream execution; the
	// downstream_* metadata hostcalls require it.
	ds *downstream
}

// HTTP versions ($http_version).
const (
	httpV09 = 0
	httpV10 = 1
	httpV11 = 2
	httpV2  = 3
	httpV3  = 4
)

func versionOf(major, minor int) uint32 {
	switch {
	case major == 0:
		return httpV09
	case major == 1 && minor == 0:
		return httpV10
	case major == 2:
		return httpV2
	case major == 3:
		return httpV3
	}
	return httpV11
}

// respObj is the object behind a response handle: one the guest builds for
// the client, or one received from a backend.
type respObj struct {
	status        int
	version       uint32
	header        headerList
	manualFraming bool
	// remote is the backend address a received response came from.
	remote netip.AddrPort
	// hbuf is where respNew starts header; a respObj is never copied by
	// value, so no other header can alias it.
	hbuf [8]hfield
}
