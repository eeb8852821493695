package pop

// status is the $fastly_status every hostcall returns. The numbering follows
// the witx definition (and compute-sdk-go's internal/abi/fastly/types.go);
// guests compare against these exact values, so they must never change.
type status = uint32

const (
	stOK               status = 0
	stError            status = 1
	stInval            status = 2
	stBadf             status = 3
	stBufLen           status = 4
	stUnsupported      status = 5
	stBadAlign         status = 6
	stHTTPInvalid      status = 7
	stHTTPUser         status = 8
	stHTTPIncomplete   status = 9
	stNone             status = 10
	stHTTPHeadTooLarge status = 11
	stHTTPInvalidStat  status = 12
	stLimitExceeded    status = 13
	stAgain            status = 14
)

// invalidHandle is the value guests initialise handle out-parameters with
// (math.MaxUint32 - 1); the host never hands it out.
const invalidHandle = 0xFFFF_FFFE

// Send error detail tags ($send_error_detail_tag) the host reports.
const (
	sendErrUninitialized       = 0
	sendErrOK                  = 1
	sendErrDNSError            = 3
	sendErrDestinationNotFound = 4
	sendErrConnectionRefused   = 7
	sendErrConnectionTerminate = 8
	sendErrConnectionTimeout   = 9
	sendErrHTTPIncomplete      = 13
	sendErrHTTPResponseTimeout = 16
	sendErrHTTPProtocolError   = 19
	sendErrURIInvalid          = 21
	sendErrInternalError       = 22
	sendErrTLSCertificateError = 11
)
