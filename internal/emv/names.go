package emv

import "strconv"

// fieldName names a top-level tag for people.
func fieldName(id string) string {
	switch id {
	case "00":
		return "payload format indicator"
	case "01":
		return "point of initiation"
	case "52":
		return "merchant category code"
	case "53":
		return "transaction currency"
	case "54":
		return "transaction amount"
	case "55":
		return "tip or convenience indicator"
	case "56":
		return "convenience fee, fixed"
	case "57":
		return "convenience fee, percentage"
	case "58":
		return "country code"
	case "59":
		return "merchant name"
	case "60":
		return "merchant city"
	case "61":
		return "postal code"
	case "62":
		return "additional data"
	case "63":
		return "CRC"
	case "64":
		return "merchant information, alternate language"
	}
	n, _ := strconv.Atoi(id)
	switch {
	case n >= 2 && n <= 25:
		return "merchant account information (scheme-reserved)"
	case n >= 26 && n <= 51:
		return "merchant account information"
	case n >= 65 && n <= 79:
		return "reserved for future use"
	case n >= 80:
		return "unreserved template"
	}
	return ""
}

// subName names a data object inside a template.
func subName(parent, id string) string {
	switch parent {
	case "62":
		switch id {
		case "01":
			return "bill number"
		case "02":
			return "mobile number"
		case "03":
			return "store label"
		case "04":
			return "loyalty number"
		case "05":
			return "reference label"
		case "06":
			return "customer label"
		case "07":
			return "terminal label"
		case "08":
			return "purpose of transaction"
		case "09":
			return "additional consumer data request"
		case "10":
			return "merchant tax id"
		case "11":
			return "merchant channel"
		}
	case "64":
		switch id {
		case "00":
			return "language preference"
		case "01":
			return "merchant name, alternate language"
		case "02":
			return "merchant city, alternate language"
		}
	}
	if id == "00" && parent != "62" && parent != "64" {
		return "globally unique identifier"
	}
	return ""
}
