//! The ways of serving beyond one session per client: the merged endpoint of the aggregator
//! (and how its answers are combined), the stateless pool, and the edge (sessions sealed into
//! their ids).

pub(crate) mod aggregate;
pub(crate) mod edge;
pub(crate) mod merged;
pub(crate) mod pool;
