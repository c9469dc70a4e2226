//! Erasure layouts: k data shards plus m parity shards, any k of which rebuild the data.
//!
//! Invariant: a `Layout` always has k >= 1 and k + m <= 255 (the limit of Reed-Solomon over
//! GF(2^8)), so every layout can be handed to the codec. Which failures a layout survives is a
//! property of how its n = k + m shards are spread: losing a zone is survivable iff no zone holds
//! more than m shards, a zone plus one more node iff no zone holds more than m - 1.

use std::fmt;

/// The most shards one version can have: Reed-Solomon over GF(2^8) with our codec.
pub const MAX_TOTAL_SHARDS: u32 = 255;

/// Why a layout cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// k = 0: there would be nothing to store.
    #[error("a layout needs at least one data shard")]
    NoDataShards,
    /// k + m exceeds [`MAX_TOTAL_SHARDS`].
    #[error("a layout has at most {MAX_TOTAL_SHARDS} shards, {total} requested")]
    TooManyShards {
        /// The requested k + m.
        total: u64,
    },
    /// A zone-based layout was asked for zones of zero nodes.
    #[error("zones must have at least one node")]
    NoNodesPerZone,
}

impl LayoutError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            LayoutError::NoDataShards => "no_data_shards",
            LayoutError::TooManyShards { .. } => "too_many_shards",
            LayoutError::NoNodesPerZone => "no_nodes_per_zone",
        }
    }
}

/// An erasure layout RS(k, m): k data shards, m parity shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    data_shards: u32,
    parity_shards: u32,
}

/// What a layout tolerates when spread as evenly as possible over a number of zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tolerance {
    /// Whether the n shards fit at all with at most one shard per node.
    pub fits: bool,
    /// Shards in the fullest zone of the even spread (ceil(n / zones)).
    pub max_shards_in_a_zone: u32,
    /// How many nodes anywhere may fail (m, when the layout fits).
    pub node_failures: u32,
    /// Whether the loss of any whole zone is survivable.
    pub zone: bool,
    /// Whether the loss of any whole zone plus one more node is survivable.
    pub zone_plus_one: bool,
}

impl Layout {
    /// RS(k, m); needs k >= 1 and k + m <= 255. m = 0 is allowed (no redundancy).
    pub fn new(data_shards: u32, parity_shards: u32) -> Result<Layout, LayoutError> {
        if data_shards == 0 {
            return Err(LayoutError::NoDataShards);
        }
        let total = u64::from(data_shards) + u64::from(parity_shards);
        if total > u64::from(MAX_TOTAL_SHARDS) {
            return Err(LayoutError::TooManyShards { total });
        }
        Ok(Layout {
            data_shards,
            parity_shards,
        })
    }

    /// The cheapest layout that survives the loss of a whole zone plus one more node with three
    /// zones of `nodes_per_zone` nodes each, at most one shard per node: z shards per zone,
    /// m = z + 1, k = 2z - 1 (z = 1: RS(1,2), three copies; z = 2: RS(3,3); z = 3: RS(5,4)).
    pub fn zone_plus_one(nodes_per_zone: u32) -> Result<Layout, LayoutError> {
        let z = u64::from(nodes_per_zone);
        if z == 0 {
            return Err(LayoutError::NoNodesPerZone);
        }
        Self::from_wide(2 * z - 1, z + 1)
    }

    /// The cheapest layout that survives the loss of a whole zone with three zones of
    /// `nodes_per_zone` nodes each: m = z, k = 2z (z = 2: RS(4,2); z = 3: RS(6,3)).
    pub fn zone_only(nodes_per_zone: u32) -> Result<Layout, LayoutError> {
        let z = u64::from(nodes_per_zone);
        if z == 0 {
            return Err(LayoutError::NoNodesPerZone);
        }
        Self::from_wide(2 * z, z)
    }

    /// `new` for values computed in u64, so that huge zone sizes report `TooManyShards`.
    fn from_wide(data_shards: u64, parity_shards: u64) -> Result<Layout, LayoutError> {
        let total = data_shards + parity_shards;
        match (u32::try_from(data_shards), u32::try_from(parity_shards)) {
            (Ok(k), Ok(m)) if total <= u64::from(MAX_TOTAL_SHARDS) => Layout::new(k, m),
            _ => Err(LayoutError::TooManyShards { total }),
        }
    }

    /// k: the number of data shards, and of shards needed to read.
    pub fn data_shards(&self) -> u32 {
        self.data_shards
    }

    /// m: the number of parity shards, and of shards that may be lost.
    pub fn parity_shards(&self) -> u32 {
        self.parity_shards
    }

    /// n = k + m.
    pub fn total_shards(&self) -> u32 {
        self.data_shards + self.parity_shards
    }

    /// Bytes stored per byte of data: n / k.
    pub fn overhead(&self) -> f64 {
        f64::from(self.total_shards()) / f64::from(self.data_shards)
    }

    /// Whether losing the zone holding `max_shards_in_a_zone` shards leaves at least k.
    pub fn survives_zone(&self, max_shards_in_a_zone: u32) -> bool {
        self.total_shards().saturating_sub(max_shards_in_a_zone) >= self.data_shards
    }

    /// Whether losing that zone and one more shard elsewhere still leaves at least k.
    pub fn survives_zone_plus_one(&self, max_shards_in_a_zone: u32) -> bool {
        self.total_shards()
            .saturating_sub(max_shards_in_a_zone)
            .saturating_sub(1)
            >= self.data_shards
    }

    /// What this layout tolerates when spread evenly over `zones` zones of `nodes_per_zone`
    /// nodes each, at most one shard per node.
    pub fn tolerance(&self, zones: u32, nodes_per_zone: u32) -> Tolerance {
        let n = self.total_shards();
        if zones == 0 {
            return Tolerance {
                fits: false,
                max_shards_in_a_zone: n,
                node_failures: 0,
                zone: false,
                zone_plus_one: false,
            };
        }
        let max = n.div_ceil(zones);
        let fits = max <= nodes_per_zone;
        // Losing the only zone is never survivable; `survives_zone` sees that as n - n < k.
        Tolerance {
            fits,
            max_shards_in_a_zone: max,
            node_failures: if fits { self.parity_shards } else { 0 },
            zone: fits && self.survives_zone(max),
            zone_plus_one: fits && self.survives_zone_plus_one(max),
        }
    }

    /// A line for humans, e.g. `RS(3,3): 6 shards, 2.00x overhead`.
    pub fn describe(&self) -> String {
        format!(
            "{self}: {} shards, {:.2}x overhead",
            self.total_shards(),
            self.overhead()
        )
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RS({},{})", self.data_shards, self.parity_shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rs(k: u32, m: u32) -> Layout {
        Layout::new(k, m).unwrap_or_else(|e| panic!("RS({k},{m}): {e}"))
    }

    #[test]
    fn new_checks_bounds() {
        assert_eq!(Layout::new(0, 3), Err(LayoutError::NoDataShards));
        assert_eq!(Layout::new(1, 0).map(|l| l.total_shards()), Ok(1));
        assert_eq!(Layout::new(255, 0).map(|l| l.total_shards()), Ok(255));
        assert_eq!(Layout::new(200, 55).map(|l| l.total_shards()), Ok(255));
        assert_eq!(
            Layout::new(200, 56),
            Err(LayoutError::TooManyShards { total: 256 })
        );
        assert_eq!(
            Layout::new(u32::MAX, u32::MAX),
            Err(LayoutError::TooManyShards {
                total: 2 * u64::from(u32::MAX)
            })
        );
    }

    #[test]
    fn architecture_tables() {
        let plus_one = [(1, (1, 2)), (2, (3, 3)), (3, (5, 4)), (5, (9, 6))];
        for (z, (k, m)) in plus_one {
            let layout = Layout::zone_plus_one(z).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (layout.data_shards(), layout.parity_shards()),
                (k, m),
                "z={z}"
            );
            assert_eq!(layout.total_shards(), 3 * z);
            let t = layout.tolerance(3, z);
            assert!(t.fits && t.zone && t.zone_plus_one, "{z}: {t:?}");
            assert_eq!(t.max_shards_in_a_zone, z);
            assert_eq!(t.node_failures, m);
        }
        let zone_only = [(1, (2, 1)), (2, (4, 2)), (3, (6, 3)), (5, (10, 5))];
        for (z, (k, m)) in zone_only {
            let layout = Layout::zone_only(z).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (layout.data_shards(), layout.parity_shards()),
                (k, m),
                "z={z}"
            );
            let t = layout.tolerance(3, z);
            assert!(t.fits && t.zone && !t.zone_plus_one, "{z}: {t:?}");
            assert!((layout.overhead() - 1.5).abs() < 1e-9);
        }
        assert_eq!(Layout::zone_plus_one(0), Err(LayoutError::NoNodesPerZone));
        assert_eq!(Layout::zone_only(0), Err(LayoutError::NoNodesPerZone));
        assert!(Layout::zone_plus_one(85).is_ok());
        assert_eq!(
            Layout::zone_plus_one(86),
            Err(LayoutError::TooManyShards { total: 258 })
        );
        assert!(matches!(
            Layout::zone_only(u32::MAX),
            Err(LayoutError::TooManyShards { .. })
        ));
    }

    #[test]
    fn overheads_and_descriptions() {
        assert_eq!(rs(3, 3).describe(), "RS(3,3): 6 shards, 2.00x overhead");
        assert_eq!(rs(5, 4).describe(), "RS(5,4): 9 shards, 1.80x overhead");
        assert_eq!(rs(9, 6).describe(), "RS(9,6): 15 shards, 1.67x overhead");
        assert_eq!(rs(1, 2).describe(), "RS(1,2): 3 shards, 3.00x overhead");
        assert_eq!(rs(4, 2).to_string(), "RS(4,2)");
    }

    #[test]
    fn survival_thresholds() {
        let l = rs(3, 3);
        assert!(l.survives_zone(3));
        assert!(!l.survives_zone(4));
        assert!(l.survives_zone_plus_one(2));
        assert!(!l.survives_zone_plus_one(3));
        assert!(l.survives_zone(0));
        assert!(!l.survives_zone(u32::MAX));
        let none = rs(4, 0);
        assert!(!none.survives_zone(1));
        assert!(none.survives_zone(0));
        assert!(!none.survives_zone_plus_one(0));
    }

    #[test]
    fn tolerance_edge_cases() {
        let l = rs(3, 3);
        let one_zone = l.tolerance(1, 6);
        assert!(one_zone.fits && !one_zone.zone && !one_zone.zone_plus_one);
        let too_small = l.tolerance(3, 1);
        assert!(!too_small.fits && !too_small.zone);
        assert_eq!(too_small.node_failures, 0);
        assert!(!l.tolerance(0, 10).fits);
        // Five zones of one node: six shards need two in some zone, which has only one node.
        let five = l.tolerance(5, 1);
        assert_eq!(five.max_shards_in_a_zone, 2);
        assert!(!five.fits);
        let six = l.tolerance(6, 1);
        assert!(six.fits && six.zone && six.zone_plus_one);
    }

    #[test]
    fn error_codes_are_distinct() {
        let codes = [
            LayoutError::NoDataShards.code(),
            LayoutError::TooManyShards { total: 300 }.code(),
            LayoutError::NoNodesPerZone.code(),
        ];
        assert!(codes[0] != codes[1] && codes[1] != codes[2] && codes[0] != codes[2]);
    }

    proptest! {
        #[test]
        fn new_accepts_exactly_the_valid_range(k in 0u32..300, m in 0u32..300) {
            let ok = Layout::new(k, m).is_ok();
            prop_assert_eq!(ok, k >= 1 && k + m <= MAX_TOTAL_SHARDS);
        }

        #[test]
        fn zone_layouts_match_their_promise(z in 1u32..=85) {
            let p = Layout::zone_plus_one(z).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(p.survives_zone_plus_one(z));
            // Cheapest: one fewer parity shard would not survive.
            let smaller = Layout::new(p.data_shards() + 1, p.parity_shards() - 1)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!smaller.survives_zone_plus_one(z));
            let o = Layout::zone_only(z).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(o.survives_zone(z));
            prop_assert!(!o.survives_zone_plus_one(z));
            prop_assert_eq!(o.total_shards(), 3 * z);
        }

        #[test]
        fn survival_matches_definition(k in 1u32..100, m in 0u32..100, max in 0u32..200) {
            let l = rs(k, m);
            prop_assert_eq!(l.survives_zone(max), i64::from(k + m) - i64::from(max) >= i64::from(k));
            prop_assert_eq!(
                l.survives_zone_plus_one(max),
                i64::from(k + m) - i64::from(max) > i64::from(k)
            );
        }
    }
}
