//! Fixed country index table shared by the loader, the kernel maps and the stats: index 0 is
//! "unknown", 1..=N the ISO 3166-1 alpha-2 codes below (plus a few registry codes), so an index
//! means the same country across database reloads and controller restarts.

/// ISO 3166-1 alpha-2 codes, then EU/AP (RIR regions) and XK (Kosovo), then ZZ for any other code.
const CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW EU AP XK ZZ";

fn codes() -> impl Iterator<Item = &'static str> {
    CODES.split(' ')
}

/// Index of a country code (case-insensitive); `None` if it is not a known code.
pub fn index_of(code: &str) -> Option<u8> {
    let up = code.to_ascii_uppercase();
    codes().position(|c| c == up).map(|i| (i + 1) as u8)
}

/// Index for a code found in a database: unknown codes map to "ZZ" rather than failing.
pub fn index_or_other(code: &str) -> u8 {
    index_of(code).unwrap_or_else(|| index_of("ZZ").expect("ZZ is in the table"))
}

/// Code of an index ("--" for 0/unknown).
pub fn code_of(index: u8) -> &'static str {
    if index == 0 {
        return "--";
    }
    codes().nth(index as usize - 1).unwrap_or("??")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn table_fits_and_round_trips() {
        let n = codes().count();
        assert!(n < xdp_common::GEO_SPLIT as usize, "{n} codes must leave index 255 free");
        assert_eq!(n, 249 + 4);
        for c in codes() {
            assert_eq!(code_of(index_of(c).unwrap()), c);
        }
        assert_eq!(index_of("fr"), index_of("FR"));
        assert_eq!(index_of("XX"), None);
        assert_eq!(code_of(index_or_other("A1")), "ZZ");
    }
}
