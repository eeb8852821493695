package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
)

// defaultCompileCache is the compile cache when neither --compile-cache
// nor EDGEPIXEL_POP_COMPILE_CACHE gives one: edgepixel-pop under the
// user's cache directory ($XDG_CACHE_HOME, else $HOME/.cache on Linux).
// Without either variable (a service started with an empty environment)
// it is a directory of this user's alone under os.TempDir(), and note
// says so; when there is none, dir is "" and note says that every start
// compiles the module afresh, and how to give a cache: a module took
// seconds to compile at each start without a word.
func defaultCompileCache() (dir, note string) {
	base, err := os.UserCacheDir()
	if err == nil {
		return filepath.Join(base, "edgepixel-pop"), ""
	}
	return tempCompileCache(err)
}

// usableDefaultCompileCache makes the default compile cache dir (with
// its note) once it is known to be used, and passes over one that cannot
// be made (a service user's HOME=/nonexistent) as defaultCompileCache
// passes over a missing HOME: the cache only saves time, and the POP
// would not start. (Made only then: --compile-cache off, or --version,
// made it anyway.)
func usableDefaultCompileCache(dir, note string) (string, string) {
	if dir == "" || note != "" {
		return dir, note // the temporary one, made, or none
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tempCompileCache(err)
	}
	return dir, note
}

// tempCompileCache is the compile cache, and its note, when the user's
// cache directory cannot be had (why).
func tempCompileCache(err error) (dir, note string) {
	const give = "--compile-cache DIR or EDGEPIXEL_POP_COMPILE_CACHE chooses one"
	tmp, terr := privateTempDir("edgepixel-pop")
	if terr != nil {
		return "", fmt.Sprintf("no compile cache (%v; %v): the module is compiled afresh at every start, which takes seconds; %s, or set HOME", err, terr, give)
	}
	return tmp, fmt.Sprintf("%v: the compile cache is %s; %s", err, tmp, give)
}

// logCompileCacheNote logs defaultCompileCache's note, if the default was
// used: a warning when there is no cache at all.
func logCompileCacheNote(log *slog.Logger, dir, note string) {
	switch {
	case note == "":
	case dir == "":
		log.Warn(note)
	default:
		log.Info(note)
	}
}
