//! Page/per_page pagination, the same everywhere: `page` from 1, `per_page` from 1 to a
//! maximum, totals in the body.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;

pub const DEFAULT_PER_PAGE: u32 = 20;
pub const MAX_PER_PAGE: u32 = 100;
/// Beyond this a client is scraping, not paging; refuse instead of scanning.
pub const MAX_PAGE: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub per_page: u32,
}

impl PageRequest {
    /// Checks optional `page`/`per_page` query values, naming the one that is out of range.
    pub fn new(page: Option<u32>, per_page: Option<u32>) -> Result<Self, Problem> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 || page > MAX_PAGE {
            return Err(
                Problem::bad_request(format!("page must be between 1 and {MAX_PAGE}")).with("parameter", "page")
            );
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(Problem::bad_request(format!("per_page must be between 1 and {MAX_PER_PAGE}"))
                .with("parameter", "per_page"));
        }
        Ok(PageRequest { page, per_page })
    }

    pub fn limit(&self) -> i64 {
        self.per_page as i64
    }

    pub fn offset(&self) -> i64 {
        (self.page as i64 - 1) * self.per_page as i64
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub per_page: u32,
    pub total: u64,
    pub total_pages: u64,
}

impl<T> Paged<T> {
    pub fn new(items: Vec<T>, request: PageRequest, total: u64) -> Self {
        Paged {
            items,
            page: request.page,
            per_page: request.per_page,
            total,
            total_pages: total.div_ceil(request.per_page as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_enforced_and_named() {
        assert!(PageRequest::new(Some(0), None).is_err());
        let err = PageRequest::new(None, Some(10_000)).unwrap_err();
        assert_eq!(err.extensions["parameter"], "per_page");
        let ok = PageRequest::new(Some(3), Some(10)).unwrap();
        assert_eq!((ok.limit(), ok.offset()), (10, 20));
        assert_eq!(Paged::new(Vec::<u8>::new(), ok, 21).total_pages, 3);
    }
}
