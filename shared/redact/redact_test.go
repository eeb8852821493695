package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:s3cret@127.0.0.1:6379/0":               "redis://:xxxxx@127.0.0.1:6379/0",
		"http://default:s3cret@127.0.0.1:8123":           "http://default:xxxxx@127.0.0.1:8123",
		"https://s3cret@collector/in":                    "https://xxxxx@collector/in",
		"https://collector/in?access_token=s3cret&a=b":   "https://collector/in?a=b&access_token=xxxxx",
		"https://collector/in?Password=s3cret":           "https://collector/in?Password=xxxxx",
		"http://127.0.0.1:8123":                          "http://127.0.0.1:8123",
		"ftp://default:s3cret@127.0.0.1:1":               "ftp://default:xxxxx@127.0.0.1:1",
		"https://user:s3cret@collector:port/":            "https://user…",
		"https://collector/in%zz?token=s3cret":           "https://collector/in%zz…",
		"Authorization Bearer s3cret":                    "Authorization…",
		"/var/lib/edgepixel":                             "/var/lib/edgepixel",
		"native://default:s3cret@[::1]:9000/?secure=yes": "native://default:xxxxx@[::1]:9000/?secure=yes",
	} {
		got := URL(in)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}
