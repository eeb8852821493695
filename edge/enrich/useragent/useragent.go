// Package useragent reads a User-Agent header: browser and its major
// version, operating system and its version, and the device class
// (desktop, mobile, tablet, bot, other).
//
// It is a single pass over the header's tokens ("Name/version" products
// and the words of its comments), comparing each with a switch: no
// tables built at start-up, no regular expressions, no allocation; every
// string it returns is a constant or a piece of the header. Bots are
// recognised by edge/enrich/bot, the one list of them.
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

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
)

// Device is a device class. The numbers are stable: they may be stored.
type Device uint8

const (
	Other   Device = iota // a TV, a console, a watch, or unknown
	Desktop               // a desktop or laptop computer
	Mobile                // a phone
	Tablet                // a tablet
	Bot                   // a program (bot.UserAgent says so)
)

var deviceNames = [...]string{"other", "desktop", "mobile", "tablet", "bot"}

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
	kaiVersion
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
	setBrowser := func(rk int, name, ver string) {
		if rk < rank {
			rank, r.Browser, r.BrowserVersion = rk, name, major(ver)
		}
	}
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
				osVersion(&r, next, tok)
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
			switch name {
			case "Edg", "EdgA", "EdgiOS", "Edge":
				setBrowser(1, "Edge", ver)
			case "OPR", "OPiOS", "OPT", "OPX":
				setBrowser(1, "Opera", ver)
			case "SamsungBrowser":
				setBrowser(1, "Samsung Internet", ver)
			case "YaBrowser", "YaSearchBrowser":
				setBrowser(1, "Yandex Browser", ver)
			case "UCBrowser", "UBrowser":
				setBrowser(1, "UC Browser", ver)
			case "Vivaldi":
				setBrowser(1, "Vivaldi", ver)
			case "DuckDuckGo", "Ddg":
				setBrowser(1, "DuckDuckGo", ver)
			case "Brave":
				setBrowser(1, "Brave", ver)
			case "Whale":
				setBrowser(1, "Whale", ver)
			case "HuaweiBrowser":
				setBrowser(1, "Huawei Browser", ver)
			case "MiuiBrowser":
				setBrowser(1, "MIUI Browser", ver)
			case "coc_coc_browser":
				setBrowser(1, "Coc Coc", ver)
			case "Silk":
				setBrowser(1, "Silk", ver)
			case "QQBrowser", "MQQBrowser":
				setBrowser(1, "QQ Browser", ver)
			case "Opera":
				setBrowser(2, "Opera", ver)
			case "FBAV":
				setBrowser(2, "Facebook", ver)
			case "GSA":
				setBrowser(2, "Google App", ver)
			case "FxiOS", "Firefox":
				setBrowser(3, "Firefox", ver)
			case "CriOS":
				setBrowser(3, "Chrome", ver)
			case "HeadlessChrome":
				setBrowser(3, "Headless Chrome", ver)
			case "Chrome", "Chromium":
				setBrowser(4, "Chrome", ver)
			case "Trident":
				if strings.HasPrefix(ver, "7.") {
					setBrowser(5, "Internet Explorer", "11")
				}
			case "Version":
				safariVersion = ver
			case "Safari":
				hasSafari = true
			case "Mobile":
				hasMobile = true
			case "KAIOS":
				r.OS, next = "KaiOS", none
				osVersion(&r, kaiVersion, ver)
			case "Tizen":
				r.OS = "Tizen"
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
			setBrowser(2, "Instagram", "")
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
	case bot.UserAgent(ua).IsBot():
		r.Device = Bot
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

// osVersion sets r.OSVersion from a version token, once.
func osVersion(r *Result, p pending, v string) {
	if r.OSVersion != "" {
		return
	}
	switch p {
	case windowsNT:
		r.OSVersion = windowsVersion(v)
	case windowsPhone, kaiVersion:
		r.OSVersion = major(v)
	case iosVersion, androidVersion:
		r.OSVersion = major(v)
	case macVersion:
		m := major(v)
		if m == "10" {
			r.OSVersion = mac10[minor(v)%len(mac10)]
			return
		}
		r.OSVersion = m
	case ieVersion:
		// "MSIE 9.0": the browser's version, not the OS's.
		if r.Browser == "" {
			r.Browser, r.BrowserVersion = "Internet Explorer", major(v)
		}
	}
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
