package clickhouse

import "testing"

func TestProfileCond(t *testing.T) {
	for _, c := range []struct {
		filters map[string]string
		want    string
		ok      bool
	}{
		{map[string]string{"country": "DE", "device": "mobile"},
			`value LIKE 'DE` + profileSep + `mobile` + profileSep + `%' AND splitByChar('` + profileSep + `', value)[1] = 'DE' AND splitByChar('` + profileSep + `', value)[2] = 'mobile'`, true},
		// Not leading: no prefix to narrow by.
		{map[string]string{"browser": "Chrome", "os": "Android"},
			`splitByChar('` + profileSep + `', value)[3] = 'Chrome' AND splitByChar('` + profileSep + `', value)[4] = 'Android'`, true},
		// LIKE's metacharacters in a value match themselves only.
		{map[string]string{"country": "a_b%", "os": "x'y"},
			`value LIKE 'a\\_b\\%` + profileSep + `%' AND splitByChar('` + profileSep + `', value)[1] = 'a_b%' AND splitByChar('` + profileSep + `', value)[4] = 'x\'y'`, true},
		{map[string]string{"country": "DE", "page": "/"}, "", false},
		// One filter has its own dimension's rows.
		{map[string]string{"country": "DE"}, "", false},
		{map[string]string{"country": "DE", "city": "Berlin"}, "", false},
		{map[string]string{"country": "D" + profileSep + "E", "os": "iOS"}, "", false},
		{map[string]string{}, "", false},
	} {
		got, ok := ProfileCond("value", c.filters)
		if got != c.want || ok != c.ok {
			t.Errorf("ProfileCond(%q) = %q, %v; want %q, %v", c.filters, got, ok, c.want, c.ok)
		}
	}
}
