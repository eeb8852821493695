package redact

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:s3cret@127.0.0.1:6379/0":               "redis://:xxxxx@127.0.0.1:6379/0",
		"http://default:s3cret@127.0.0.1:8123":           "http://default:xxxxx@127.0.0.1:8123",
		"HTTP://default:s3cret@Host:8123/a":              "http://default:xxxxx@Host:8123/a",
		"https://s3cret@collector/in":                    "https://xxxxx@collector/in",
		"https://collector/in?access_token=s3cret&a=b":   "https://collector/in?…",
		"https://collector/in?a=1;password=s3cret":       "https://collector/in?…",
		"https://collector/in#access_token=s3cret":       "https://collector/in#…",
		"http://127.0.0.1:8123":                          "http://127.0.0.1:8123",
		"ftp://default:s3cret@127.0.0.1:1":               "ftp://default:xxxxx@127.0.0.1:1",
		"http://u:123/s3cret@h":                          "http://u…",
		"https://user:s3cret@collector:port/":            "https://user…",
		"https://collector/in%zz?token=s3cret":           "https://collector/in%zz…",
		"redis:s3cret@host":                              "redis…",
		"Authorization Bearer s3cret":                    "Authorization…",
		"token=s3cret":                                   "token…",
		"/var/lib/edgepixel":                             "/var/lib/edgepixel",
		"native://default:s3cret@[::1]:9000/?secure=yes": "native://default:xxxxx@[::1]:9000/?…",
		"https://u:p%40ss%2Fs3cret@h/":                   "https://u:xxxxx@h/",
		// Tokens in the path: Sumo Logic, Loggly, Slack, Discord.
		"https://endpoint1.collection.sumologic.com/receiver/v1/http/ZaVnC4dhaV3s3cret0K9mZ4xqP_w==": "https://endpoint1.collection.sumologic.com/receiver/v1/http/xxxxx",
		"https://logs-01.loggly.com/bulk/8c1b2e3f-s3cre-4a5b-9c8d-0e1f2a3b4c5d/tag/http/":            "https://logs-01.loggly.com/bulk/xxxxx/tag/http/",
		"https://hooks.slack.com/services/T0001/B0002/XXs3cretXX1234567890":                          "https://hooks.slack.com/services/T0001/B0002/xxxxx",
		"https://discord.com/api/webhooks/123456789012345678/abcDEF-s3cret_0123456789":               "https://discord.com/api/webhooks/123456789012345678/xxxxx",
		"https://collector/ingest/ndjson":                                                            "https://collector/ingest/ndjson",
		// Names of words and numbers are kept; Telegram's bot token and a
		// Slack token of letters alone in both cases are hidden.
		"https://es.example/edgepixel-logs-2025/_bulk":                            "https://es.example/edgepixel-logs-2025/_bulk",
		"https://log.example/v1/projects/my-project-123456/logs":                  "https://log.example/v1/projects/my-project-123456/logs",
		"https://c.example/ingest/edgepixel-pop-eu-west-1/v2":                     "https://c.example/ingest/edgepixel-pop-eu-west-1/v2",
		"/var/log/edgepixel/pop-2025-06-01.ndjson":                                "/var/log/edgepixel/pop-2025-06-01.ndjson",
		"https://api.telegram.org/bot123456:AAHs3cretXyZ0123abcdEFGH/sendMessage": "https://api.telegram.org/xxxxx/sendMessage",
		"https://hooks.slack.com/services/T0001/B0002/abcdefGHIJKLmnopQRSTuvwx":   "https://hooks.slack.com/services/T0001/B0002/xxxxx",
		// No digit anywhere in the path (a re-tester's).
		"https://hooks.slack.com/services/TABCDEFGH/BABCDEFGH/AbcdefghijKLMNOPQRSTuvwx": "https://hooks.slack.com/services/TABCDEFGH/BABCDEFGH/xxxxx",
		"https://c.example/ingest/abcDEF+ghiJKL+mnoPQR/mno=pqrsTUVWxyzABC":              "https://c.example/ingest/xxxxx/xxxxx",
		"https://collector/api/v2/logs":                                                 "https://collector/api/v2/logs",
		"https://collector/bulk/s3cretAAAA1234567?x=1":                                  "https://collector/bulk/xxxxx?…",
		"https://collector/in%zz/s3cretAAAA1234567?token=s3cret":                        "https://collector/in%zz/xxxxx…",
		"https://collector/in%zz/s3cretAAAA1234567":                                     "https://collector/in%zz/xxxxx",
		// Tokens the general rules miss: in Pipedream's host, Zapier's
		// short one, a Slack token of lower-case letters alone.
		"https://eos3cret1234.m.pipedream.net/path":                             "https://xxxxx.m.pipedream.net/path",
		"https://EOS3CRET.M.Pipedream.net:443?x=1":                              "https://xxxxx.M.Pipedream.net:443?…",
		"https://hooks.zapier.com/hooks/catch/1234567/s3cre7d/":                 "https://hooks.zapier.com/hooks/catch/1234567/xxxxx/",
		"https://hooks.zapier.com/hooks/catch/1234567/s3cre7d/silent":           "https://hooks.zapier.com/hooks/catch/1234567/xxxxx/xxxxx",
		"https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx": "https://hooks.slack.com/services/T0001/B0002/xxxxx",
		"https://pipedream.net/docs":                                            "https://pipedream.net/docs",
		"https://c.example/ingest/internationalization":                         "https://c.example/ingest/internationalization",
	} {
		if got := URL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// A url.Error anywhere in the chain quotes its URL redacted.
func TestError(t *testing.T) {
	// url.Parse's words quote a password it read as a port (a tester's).
	for _, raw := range []string{"https://user:Pa55word/SecretTail@collector.example.com/in", "https://host:Tok3n/in"} {
		_, perr := url.Parse(raw)
		if err := Error(perr); err == nil || strings.Contains(err.Error(), "Pa55word") || strings.Contains(err.Error(), "Tok3n") || !strings.Contains(err.Error(), "invalid port") {
			t.Errorf("%v, want url.Parse's words without the password", err)
		}
	}
	_, perr := url.Parse("redis://:s3cret@127.0.0.1:port/0")
	err := Error(fmt.Errorf("redis: %w", perr))
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "invalid port") {
		t.Errorf("%v, want the parse error without the password", err)
	}
	if Error(nil) != nil {
		t.Error("nil became an error")
	}
}
