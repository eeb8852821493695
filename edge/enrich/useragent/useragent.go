// Package useragent reads a User-Agent header: browser and its major
// version, operating system and its version, and the device class
// (desktop, mobile, tablet, bot, other).
//
// It is a single pass over the header's tokens ("Name/version" products
// and the words of its comments), comparing each with a switch: no
// tables built at start-up, no regular expressions, no allocation; every
// string it returns is a constant or a piece of the header.
//
// Bots are recognised by edge/enrich/bot, the one list of them: Parse
// gives the device's form factor, and a hit bot.Check calls a bot gets
// the class Bot from its caller:
//
//	ua := useragent.Parse(h.UserAgent)
//	if v := bot.Check(in); v.IsBot() {
//		ua.Device = useragent.Bot
//	}
//
// Why not github.com/medama-io/go-useragent, the well-kept parser built
// for privacy-first analytics that the issue proposed: it builds a trie of
// tens of thousands of nodes from its pattern lists in every new instance,
// at start and on the heap. A Compute instance serves a handful of
// requests, so that start is paid nearly per hit; TinyGo cannot fold the
// trie into the module's data; the trie is pointer data that every garbage
// collection scans; and it gives no OS version. (The commit that added this
// package has the measurements.) medama remains the judge: TestAgreesWithMedama
// compares Parse with it over the real user agents its repository tests with.
//
// What a user agent cannot say, it does not guess: Windows 11 sends
// "Windows NT 10.0" and is reported as Windows 10, current macOS sends
// "10_15_7" (frozen by the browsers), an iPad in desktop mode looks like a
// Mac, and Chrome's reduced user agent hides the Android version ("10; K")
// and device. Client hints (Sec-CH-UA-Platform-Version) would tell; a
// pixel request does not carry the high-entropy ones.
package useragent

import (
	"strings"

	"github.com/edgepixel/edgepixel/shared/event"
)

// Device is a device class. The numbers are stable: they may be stored.
type Device uint8

const (
	Other   Device = iota // a TV, a console, a watch, or unknown
	Desktop               // a desktop or laptop computer
	Mobile                // a phone
	Tablet                // a tablet
	Bot                   // a program: set by the caller from bot.Check, never by Parse
)

var deviceNames = event.Devices

// String returns the class's lower-case name.
func (d Device) String() string {
	if int(d) < len(deviceNames) {
		return deviceNames[d]
	}
	return "other"
}

// Result is what a user agent says. Strings are printable ASCII, "" when
// unknown; versions are digits (and one '.' for macOS 10.x and Windows
// 8.1), at most 16 bytes.
type Result struct {
	// Browser is the browser's common name: "Chrome", "Safari",
	// "Firefox", "Edge", "Samsung Internet", ...
	Browser string
	// BrowserVersion is its major version ("131"): what browsers still
	// vary (Chrome's reduced user agent sends "131.0.0.0") and all an
	// analytics report groups by; finer versions only make visitors more
	// tellable apart.
	BrowserVersion string
	// OS is the operating system: "Windows", "macOS", "iOS", "Android",
	// "Linux", "Chrome OS", ...
	OS string
	// OSVersion is its marketing version where the agent tells: Windows
	// "10", "8.1", "7", "XP"; macOS "10.15" (major.minor before 11, then
	// major); iOS and Android major ("17", "14").
	OSVersion string
	Device    Device
}

// maxVersion bounds a version's length.
const maxVersion = 16

// pending says which version the next token may carry.
type pending uint8

const (
	none pending = iota
	windowsNT
	windowsPhone
	iosVersion
	macVersion
	androidVersion
	ieVersion
)

// Parse reads ua. It never fails and does not allocate.
func Parse(ua string) Result {
	var r Result
	var (
		next                       pending
		prev                       string
		hasMobile, hasTablet, isTV bool
		webview, hasSafari         bool
		rank                       = 99 // of the browser found: lower wins
		safariVersion              string
	)
	for i := 0; i < len(ua); {
		// The next token: up to a space, ';', '(', ')' or ','.
		for i < len(ua) && isSep(ua[i]) {
			i++
		}
		j := i
		for j < len(ua) && !isSep(ua[j]) {
			j++
		}
		tok := ua[i:j]
		i = j
		if tok == "" {
			break
		}
		if next != none {
			if isDigit(tok[0]) {
				if next == ieVersion {
					if r.Browser == "" { // "MSIE 9.0": the browser's version
						rank, r.Browser, r.BrowserVersion = 5, "Internet Explorer", major(tok)
					}
				} else if r.OSVersion == "" {
					r.OSVersion = osVersion(next, tok)
				}
				next = none
				prev = tok
				continue
			}
			if next != iosVersion || tok != "OS" {
				next = none
			}
		}
		if slash := strings.IndexByte(tok, '/'); slash > 0 {
			name, ver := tok[:slash], tok[slash+1:]
			brank, bname := 99, ""
			switch name {
			case "Edg", "EdgA", "EdgiOS", "Edge":
				brank, bname = 1, "Edge"
			case "OPR", "OPiOS", "OPT", "OPX":
				brank, bname = 1, "Opera"
			case "SamsungBrowser":
				brank, bname = 1, "Samsung Internet"
			case "YaBrowser", "YaSearchBrowser":
				brank, bname = 1, "Yandex Browser"
			case "UCBrowser", "UBrowser":
				brank, bname = 1, "UC Browser"
			case "Vivaldi":
				brank, bname = 1, "Vivaldi"
			case "DuckDuckGo", "Ddg":
				brank, bname = 1, "DuckDuckGo"
			case "Brave":
				brank, bname = 1, "Brave"
			case "Whale":
				brank, bname = 1, "Whale"
			case "HuaweiBrowser":
				brank, bname = 1, "Huawei Browser"
			case "MiuiBrowser":
				brank, bname = 1, "MIUI Browser"
			case "coc_coc_browser":
				brank, bname = 1, "Coc Coc"
			case "Silk":
				brank, bname = 1, "Silk"
			case "QQBrowser", "MQQBrowser":
				brank, bname = 1, "QQ Browser"
			case "Opera":
				brank, bname = 2, "Opera"
			case "FBAV":
				brank, bname = 2, "Facebook"
			case "GSA":
				brank, bname = 2, "Google App"
			case "FxiOS", "Firefox":
				brank, bname = 3, "Firefox"
			case "CriOS":
				brank, bname = 3, "Chrome"
			case "HeadlessChrome":
				brank, bname = 3, "Headless Chrome"
			case "Chrome", "Chromium":
				brank, bname = 4, "Chrome"
			case "Trident":
				if strings.HasPrefix(ver, "7.") {
					brank, bname, ver = 5, "Internet Explorer", "11"
				}
			case "Version":
				safariVersion = ver
			case "Safari":
				hasSafari = true
			case "Mobile":
				hasMobile = true
			case "KAIOS":
				r.OS, next = "KaiOS", none
				if r.OSVersion == "" {
					r.OSVersion = major(ver)
				}
			case "Tizen":
				r.OS = "Tizen"
			}
			if brank < rank {
				rank, r.Browser, r.BrowserVersion = brank, bname, major(ver)
			}
			prev = name
			continue
		}
		switch tok {
		case "Windows":
			if r.OS == "" {
				r.OS = "Windows"
			}
		case "NT":
			if prev == "Windows" {
				next = windowsNT
			}
		case "Phone":
			if prev == "Windows" {
				r.OS, next = "Windows Phone", windowsPhone
			}
		case "iPhone", "iPod":
			r.OS, hasMobile = "iOS", true
		case "iPad":
			r.OS, hasTablet = "iOS", true
		case "OS":
			switch r.OS {
			case "iOS":
				next = iosVersion
			case "macOS":
				next = macVersion
			}
		case "X":
			if prev == "OS" && r.OS == "macOS" {
				next = macVersion
			}
		case "Macintosh":
			if r.OS == "" {
				r.OS = "macOS"
			}
		case "Android":
			if r.OS != "Windows Phone" {
				r.OS, next = "Android", androidVersion
			}
		case "CrOS":
			r.OS = "Chrome OS"
		case "Linux", "X11", "Ubuntu", "Fedora":
			if r.OS == "" {
				r.OS = "Linux"
			}
		case "FreeBSD", "OpenBSD", "NetBSD":
			if r.OS == "" || r.OS == "Linux" {
				r.OS = tok
			}
		case "HarmonyOS", "OpenHarmony":
			r.OS = "HarmonyOS"
		case "Mobile":
			hasMobile = true
		case "Tablet":
			hasTablet = true
		case "wv":
			webview = true
		case "MSIE":
			next = ieVersion
		case "Instagram":
			if 2 < rank {
				rank, r.Browser, r.BrowserVersion = 2, "Instagram", ""
			}
		case "PlayStation", "PLAYSTATION", "Xbox", "Nintendo", "SMART-TV", "SmartTV", "SMARTTV",
			"Web0S", "WebOS", "webOS", "CrKey", "BRAVIA", "AFTB", "AFTT", "AFTM", "AFTS", "Roku", "GoogleTV", "AndroidTV":
			isTV = true
		}
		prev = tok
	}

	if r.Browser == "" && safariVersion != "" && (hasSafari || r.OS == "iOS") {
		rank, r.Browser, r.BrowserVersion = 6, "Safari", major(safariVersion)
	}
	if r.Browser == "Chrome" && webview {
		r.Browser = "Chrome WebView"
	}
	switch {
	case isTV:
		r.Device = Other
	case hasTablet:
		r.Device = Tablet
	case r.OS == "Android" && !hasMobile:
		r.Device = Tablet // Android's convention: tablets omit "Mobile"
	case r.OS == "Android" || r.OS == "iOS" || r.OS == "Windows Phone" || r.OS == "KaiOS" || hasMobile:
		r.Device = Mobile
	case r.OS == "Windows" || r.OS == "macOS" || r.OS == "Linux" || r.OS == "Chrome OS" ||
		r.OS == "FreeBSD" || r.OS == "OpenBSD" || r.OS == "NetBSD":
		r.Device = Desktop
	}
	return r
}

// osVersion reads an operating system's version token.
func osVersion(p pending, v string) string {
	switch p {
	case windowsNT:
		return windowsVersion(v)
	case macVersion:
		if m := major(v); m != "10" {
			return m
		}
		return mac10[minor(v)%len(mac10)]
	}
	return major(v) // Windows Phone, iOS, Android
}

// mac10 names macOS 10.x by minor version; later minors read as "10".
var mac10 = [...]string{"10.0", "10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.7", "10.8",
	"10.9", "10.10", "10.11", "10.12", "10.13", "10.14", "10.15", "10"}

// windowsVersion maps a Windows NT kernel version to the marketing one.
func windowsVersion(nt string) string {
	switch {
	case strings.HasPrefix(nt, "10.0"):
		return "10"
	case strings.HasPrefix(nt, "6.3"):
		return "8.1"
	case strings.HasPrefix(nt, "6.2"):
		return "8"
	case strings.HasPrefix(nt, "6.1"):
		return "7"
	case strings.HasPrefix(nt, "6.0"):
		return "Vista"
	case strings.HasPrefix(nt, "5.1"), strings.HasPrefix(nt, "5.2"):
		return "XP"
	}
	return ""
}

// major returns v's leading digits (at most maxVersion of them).
func major(v string) string {
	n := 0
	for n < len(v) && n < maxVersion && isDigit(v[n]) {
		n++
	}
	return v[:n]
}

// minor returns the number after v's first '.' or '_' (0 when none).
func minor(v string) int {
	i := strings.IndexAny(v, "._")
	if i < 0 {
		return 0
	}
	n := 0
	for k := i + 1; k < len(v) && isDigit(v[k]) && n <= 100; k++ {
		n = n*10 + int(v[k]-'0')
	}
	if n >= len(mac10)-1 {
		return len(mac10) - 1
	}
	return n
}

func isSep(c byte) bool {
	return c == ' ' || c == ';' || c == '(' || c == ')' || c == ','
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
