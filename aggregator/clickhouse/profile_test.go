package clickhouse

import "testing"

func TestProfileCond(t *testing.T) {
	for _, c := range []struct {
		filters map[string]string
		want    string
		dim     string
		ok      bool
	}{
		{map[string]string{"country": "DE", "device": "mobile"},
			`value LIKE 'DE` + profileSep + `mobile` + profileSep + `%' AND splitByChar('` + profileSep + `', value)[1] = 'DE' AND splitByChar('` + profileSep + `', value)[2] = 'mobile'`, ProfileDim, true},
		// Not leading: no prefix to narrow by.
		{map[string]string{"browser": "Chrome", "os": "Android"},
			`splitByChar('` + profileSep + `', value)[3] = 'Chrome' AND splitByChar('` + profileSep + `', value)[4] = 'Android'`, ProfileDim, true},
		// LIKE's metacharacters in a value match themselves only.
		{map[string]string{"country": "a_b%", "os": "x'y"},
			`value LIKE 'a\\_b\\%` + profileSep + `%' AND splitByChar('` + profileSep + `', value)[1] = 'a_b%' AND splitByChar('` + profileSep + `', value)[4] = 'x\'y'`, ProfileDim, true},
		// Every part: the prefix ends where the value does (a separator
		// after the last part matched nothing).
		{map[string]string{"country": "DE", "device": "mobile", "browser": "Chrome", "os": "Android"},
			`value LIKE 'DE` + profileSep + `mobile` + profileSep + `Chrome` + profileSep + `Android%' AND splitByChar('` + profileSep + `', value)[1] = 'DE' AND splitByChar('` + profileSep + `', value)[2] = 'mobile' AND splitByChar('` + profileSep + `', value)[3] = 'Chrome' AND splitByChar('` + profileSep + `', value)[4] = 'Android'`, ProfileDim, true},
		// The verdict: ProfileBotDim's fifth part.
		{map[string]string{"country": "DE", BotDim: "0"},
			`value LIKE 'DE` + profileSep + `%' AND splitByChar('` + profileSep + `', value)[1] = 'DE' AND splitByChar('` + profileSep + `', value)[5] = '0'`, ProfileBotDim, true},
		{map[string]string{"device": "mobile", "os": "iOS", BotDim: "0"},
			`splitByChar('` + profileSep + `', value)[2] = 'mobile' AND splitByChar('` + profileSep + `', value)[4] = 'iOS' AND splitByChar('` + profileSep + `', value)[5] = '0'`, ProfileBotDim, true},
		{map[string]string{"country": "DE", "device": "mobile", "browser": "Chrome", "os": "Android", BotDim: "0"},
			`value LIKE 'DE` + profileSep + `mobile` + profileSep + `Chrome` + profileSep + `Android` + profileSep + `0%' AND splitByChar('` + profileSep + `', value)[1] = 'DE' AND splitByChar('` + profileSep + `', value)[2] = 'mobile' AND splitByChar('` + profileSep + `', value)[3] = 'Chrome' AND splitByChar('` + profileSep + `', value)[4] = 'Android' AND splitByChar('` + profileSep + `', value)[5] = '0'`, ProfileBotDim, true},
		{map[string]string{"page": "/", BotDim: "0"}, "", "", false},
		{map[string]string{BotDim: "0"}, "", "", false},
		{map[string]string{"country": "DE", "page": "/"}, "", "", false},
		// One filter has its own dimension's rows.
		{map[string]string{"country": "DE"}, "", "", false},
		{map[string]string{"country": "DE", "city": "Berlin"}, "", "", false},
		{map[string]string{"country": "D" + profileSep + "E", "os": "iOS"}, "", "", false},
		{map[string]string{}, "", "", false},
	} {
		got, dim, ok := ProfileCond("value", c.filters)
		if got != c.want || dim != c.dim || ok != c.ok {
			t.Errorf("ProfileCond(%q) = %q, %q, %v; want %q, %q, %v", c.filters, got, dim, ok, c.want, c.dim, c.ok)
		}
	}
}
