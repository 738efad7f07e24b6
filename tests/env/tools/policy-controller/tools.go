//go:build tools

// Package tools pins the commands tests/env/build compiles from this module.
package tools

import _ "github.com/sigstore/policy-controller/cmd/tester"
