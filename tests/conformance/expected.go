package conformance

// Expected lists the SDK tests the POP fails on purpose, with the reason.
// Each must fail: if one passes (or stops running), the run fails until it
// is taken off this list, so the list stays true. Keep it short: a test
// belongs here only when it needs a Fastly product or a Viceroy testing
// device the POP deliberately lacks, never for a POP bug.
var Expected = []Expectation{
	{
		Package: "end_to_end_tests/bot-detection",
		Test:    "TestBotDetection",
		Reason: "bot detection is a Fastly product the POP does not have; it answers \"not analysed\". " +
			"Viceroy fakes a verdict from the client's own X-Fastly-Bot-* request headers, which a POP " +
			"that serves real traffic must not trust (only the test's first, not-analysed case holds)",
	},
}
