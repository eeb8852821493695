package main

import (
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

func TestLimitFlags(t *testing.T) {
	o, err := parseArgs([]string{"m.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg := o.limits.apply(pop.Config{})
	if !cfg.Reload || cfg.FreshInstances || cfg.WallBudget != 2*time.Minute || cfg.CPUBudget != 0 || cfg.IdleTimeout != 5*time.Second {
		t.Errorf("defaults: %+v", cfg)
	}

	e := env(map[string]string{
		"EDGEPIXEL_POP_WATCH":          "false",
		"EDGEPIXEL_POP_FRESH_INSTANCE": "1",
		"EDGEPIXEL_POP_WALL_BUDGET":    "30s",
		"EDGEPIXEL_POP_CPU_BUDGET":     "50ms",
		"EDGEPIXEL_POP_IDLE_TIMEOUT":   "0",
	})
	o, err = parseArgs([]string{"m.wasm", "--wall-budget", "10s"}, e)
	if err != nil {
		t.Fatal(err)
	}
	cfg = o.limits.apply(pop.Config{})
	// 0 on the command line is "off", which pop.Config spells negative.
	if cfg.Reload || !cfg.FreshInstances || cfg.WallBudget != 10*time.Second || cfg.CPUBudget != 50*time.Millisecond || cfg.IdleTimeout >= 0 {
		t.Errorf("environment and flags: %+v", cfg)
	}

	o, err = parseArgs([]string{"--watch=false", "--fresh-instance", "--cpu-budget=20ms", "--idle-timeout", "1m", "--wall-budget=0", "m.wasm"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg = o.limits.apply(pop.Config{})
	if cfg.Reload || !cfg.FreshInstances || cfg.WallBudget >= 0 || cfg.CPUBudget != 20*time.Millisecond || cfg.IdleTimeout != time.Minute {
		t.Errorf("flags: %+v", cfg)
	}

	for _, args := range [][]string{
		{"--cpu-budget", "-1s", "m.wasm"},
		{"--wall-budget", "soon", "m.wasm"},
	} {
		if _, err := parseArgs(args, env(nil)); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
	if _, err := parseArgs([]string{"m.wasm"}, env(map[string]string{"EDGEPIXEL_POP_WATCH": "sometimes"})); err == nil {
		t.Error("bad EDGEPIXEL_POP_WATCH accepted")
	}
}
