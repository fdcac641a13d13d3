package event

import "time"

var testTime = time.Date(2025, 1, 1, 0, 18, 38, 123456789, time.UTC)
