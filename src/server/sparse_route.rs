//! Which encoder a request's texts run through on an inference-free SPLADE model (a
//! sentence-transformers `Router`: opensearch's doc-only neural sparse encoders). Documents run
//! through the masked LM; queries are weighed by the checkout's static table, as
//! `SparseEncoder.encode_query` routes them, at the cost of a tokenization. A request names
//! the route as sentence-transformers names it, by `prompt_name` (`query`, `document`; naming
//! none, the Router's default route, the documents' as sentence-transformers saves it);
//! `/score`, `/rerank` and TEI's `/similarity` weigh their query by the table and encode their
//! documents. Any other model, or one served under another `--pooling`, has one route.
use crate::engine::pooling::Pooling;
use crate::server::state::Ready;
use candor_models::encoder::StaticRoute;

/// The encoder a request's texts run through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The model itself (every model's only route).
    Encoder,
    /// The static table: no forward pass.
    Static,
}

impl Ready {
    /// The route a request naming `prompt_name` takes (naming none, the Router's default).
    pub fn route(&self, prompt_name: Option<&str>) -> Route {
        match (self.static_route(), prompt_name) {
            (Some(route), Some(name)) if name == route.name => Route::Static,
            (Some(route), None) if route.default => Route::Static,
            _ => Route::Encoder,
        }
    }

    /// The route a query takes where a request scores a query against documents: the static
    /// one where the model has it.
    pub fn query_route(&self) -> Route {
        match self.static_route() {
            Some(_) => Route::Static,
            None => Route::Encoder,
        }
    }

    /// The model's static route, where it pools sparse vectors (under another `--pooling` the
    /// table has nothing to be compared with).
    fn static_route(&self) -> Option<&StaticRoute> {
        (self.static_sparse.as_deref()).filter(|_| self.pooling == Pooling::Sparse)
    }

    /// Each input's vector by the static route, where `route` is it; None for the encoder's.
    pub fn static_vectors(&self, route: Route, inputs: &[Vec<u32>]) -> Option<Vec<Vec<f32>>> {
        let table = &self
            .static_route()
            .filter(|_| route == Route::Static)?
            .table;
        Some(
            (inputs.iter())
                .map(|ids| table.vector(ids, self.limits.vocab))
                .collect(),
        )
    }
}
