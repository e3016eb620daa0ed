//! stub
use proc_macro::TokenStream; #[proc_macro_attribute] pub fn register(_a: TokenStream, i: TokenStream) -> TokenStream { i }
