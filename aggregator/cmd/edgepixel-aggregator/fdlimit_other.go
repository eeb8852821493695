//go:build !unix

package main

import "log/slog"

func fitConns(_ *slog.Logger, maxConns int) int { return maxConns }
