//! Procedural macros of the `multiproc` crate. Use them through `multiproc`
//! (`#[multiproc::register]`), not directly.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, LitStr, ReturnType, Token, Type, Visibility};

/// Registers a type with every manager of this program and generates its proxy, as Python's
/// `BaseManager.register(typeid, callable)` does. See the `multiproc` crate's
/// documentation of `register` for the rules and an example.
#[proc_macro_attribute]
pub fn register(attr: TokenStream, item: TokenStream) -> TokenStream {
    let options = syn::parse_macro_input!(attr as Options);
    let input = syn::parse_macro_input!(item as ItemImpl);
    match expand(options, input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct Options {
    typeid: Option<LitStr>,
    proxy: Option<LitStr>,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut o = Options::default();
        let pairs = Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated(input)?;
        for p in pairs {
            let lit = match &p.value {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.clone(),
                other => return Err(syn::Error::new(other.span(), "expected a string literal")),
            };
            if p.path.is_ident("typeid") {
                o.typeid = Some(lit);
            } else if p.path.is_ident("proxy") {
                o.proxy = Some(lit);
            } else {
                return Err(syn::Error::new(
                    p.path.span(),
                    "expected `typeid = \"...\"` or `proxy = \"...\"`",
                ));
            }
        }
        Ok(o)
    }
}

/// A parameter of an exposed function: its type as the caller writes it, and the owned type
/// the server decodes before passing a reference (`&str` -> `String`, `&[T]` -> `Vec<T>`,
/// `&T` -> `T`).
struct Param {
    ty: Type,
    owned: Type,
    by_ref: bool,
}

fn params(f: &ImplItemFn) -> syn::Result<Vec<Param>> {
    let mut out = Vec::new();
    for arg in &f.sig.inputs {
        let FnArg::Typed(pt) = arg else { continue };
        let ty = (*pt.ty).clone();
        let (owned, by_ref) = match &ty {
            Type::Reference(r) => {
                if r.mutability.is_some() {
                    return Err(syn::Error::new(
                        r.span(),
                        "a registered method cannot take `&mut` arguments: they would be copies",
                    ));
                }
                let owned: Type = match &*r.elem {
                    Type::Path(p) if p.path.is_ident("str") => syn::parse_quote!(::std::string::String),
                    Type::Slice(s) => {
                        let e = &s.elem;
                        syn::parse_quote!(::std::vec::Vec<#e>)
                    }
                    other => other.clone(),
                };
                (owned, true)
            }
            other => (other.clone(), false),
        };
        out.push(Param { ty, owned, by_ref });
    }
    Ok(out)
}

fn is_self_type(ty: &Type, self_ident: &syn::Ident) -> bool {
    match ty {
        Type::Path(p) => p.path.is_ident("Self") || p.path.is_ident(self_ident),
        _ => false,
    }
}

fn doc_attrs(f: &ImplItemFn) -> Vec<&syn::Attribute> {
    f.attrs.iter().filter(|a| a.path().is_ident("doc")).collect()
}

fn expand(options: Options, input: ItemImpl) -> syn::Result<TokenStream2> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new(
            input.generics.span(),
            "#[register] cannot register a generic type: register a concrete one",
        ));
    }
    if let Some((_, path, _)) = &input.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[register] goes on an inherent `impl Type { ... }` block, not a trait impl",
        ));
    }
    let self_ty = &input.self_ty;
    let self_ident = match &**self_ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().expect("a path has a segment").ident.clone()
        }
        other => return Err(syn::Error::new(other.span(), "#[register] needs a named type")),
    };
    let typeid = options.typeid.map(|l| l.value()).unwrap_or_else(|| self_ident.to_string());
    let proxy_name = options.proxy.map(|l| l.value()).unwrap_or_else(|| format!("{self_ident}Proxy"));
    let proxy = syn::Ident::new(&proxy_name, Span::call_site());
    let mp = quote!(::multiproc);
    let private = quote!(::multiproc::__private);

    let mut ctor_arms = Vec::new();
    let mut method_arms = Vec::new();
    let mut proxy_fns = Vec::new();

    for item in &input.items {
        let ImplItem::Fn(f) = item else { continue };
        if !matches!(f.vis, Visibility::Public(_) | Visibility::Restricted(_)) {
            continue;
        }
        let sig = &f.sig;
        let name = &sig.ident;
        let name_str = name.to_string();
        let receiver = sig.receiver();
        if !sig.generics.params.is_empty() {
            return Err(syn::Error::new(sig.generics.span(), "a registered method cannot be generic"));
        }
        if sig.asyncness.is_some() || sig.unsafety.is_some() {
            return Err(syn::Error::new(sig.span(), "a registered method cannot be `async` or `unsafe`"));
        }
        let ps = params(f)?;
        let idents: Vec<syn::Ident> = (0..ps.len()).map(|i| format_ident!("__arg{}", i)).collect();
        let tys: Vec<&Type> = ps.iter().map(|p| &p.ty).collect();
        let owned: Vec<&Type> = ps.iter().map(|p| &p.owned).collect();
        let passed: Vec<TokenStream2> =
            ps.iter().zip(&idents).map(|(p, i)| if p.by_ref { quote!(&#i) } else { quote!(#i) }).collect();
        let docs = doc_attrs(f);
        let decode = quote! {
            let (#(#idents,)*): (#(#owned,)*) = #private::decode_args(__args)?;
        };
        match receiver {
            None => {
                let returns_self =
                    matches!(&sig.output, ReturnType::Type(_, t) if is_self_type(t, &self_ident));
                if !returns_self {
                    continue; // an associated function that is not a constructor stays local
                }
                ctor_arms.push(quote! {
                    #name_str => {
                        #decode
                        Ok(#self_ty::#name(#(#passed),*))
                    }
                });
                proxy_fns.push(quote! {
                    #(#docs)*
                    ///
                    /// Runs in the manager's server, which keeps the new object.
                    pub fn #name(manager: &#mp::Manager, #(#idents: #tys),*) -> #mp::Result<Self> {
                        manager
                            .create_registered(#typeid, #name_str, &(#(#idents,)*))
                            .map(|base| #proxy { base })
                    }
                });
            }
            Some(r) => {
                if r.reference.is_none() {
                    return Err(syn::Error::new(r.span(), "a registered method must take `&self` or `&mut self`: the object stays in the server"));
                }
                let access = if r.mutability.is_some() {
                    quote!(#private::write(__this))
                } else {
                    quote!(#private::read(__this))
                };
                let ret: Type = match &sig.output {
                    ReturnType::Default => syn::parse_quote!(()),
                    ReturnType::Type(_, t) => {
                        if is_self_type(t, &self_ident) {
                            syn::parse_quote!(#self_ty)
                        } else {
                            (**t).clone()
                        }
                    }
                };
                method_arms.push(quote! {
                    #name_str => {
                        #decode
                        let __result = #access.#name(#(#passed),*);
                        #private::encode_result(&__result, __out)
                    }
                });
                proxy_fns.push(quote! {
                    #(#docs)*
                    pub fn #name(&self, #(#idents: #tys),*) -> #mp::Result<#ret> {
                        self.base.call(#name_str, &(#(#idents,)*))
                    }
                });
            }
        }
    }

    let static_name = format_ident!("__MULTIPROCESSING_REGISTER_{}", self_ident.to_string().to_uppercase());
    let proxy_doc = format!(
        "A proxy to a [`{self_ident}`] kept in a manager's server (type id `{typeid:?}`), generated by \
         `#[multiproc::register]`: each method runs there and returns its result here."
    );

    Ok(quote! {
        #input

        #[doc = #proxy_doc]
        pub struct #proxy {
            base: #mp::manager::BaseProxy,
        }

        #[allow(clippy::too_many_arguments, clippy::new_ret_no_self)]
        impl #proxy {
            #(#proxy_fns)*
        }

        impl #mp::manager::Proxy for #proxy {
            const NAME: &'static str = #proxy_name;
            const TYPEID: &'static str = #typeid;
            fn base(&self) -> &#mp::manager::BaseProxy {
                &self.base
            }
            fn from_base(base: #mp::manager::BaseProxy) -> Self {
                #proxy { base }
            }
        }

        impl ::std::clone::Clone for #proxy {
            fn clone(&self) -> Self {
                #proxy { base: self.base.clone() }
            }
        }

        impl ::std::fmt::Debug for #proxy {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                self.base.fmt_repr(f, #proxy_name)
            }
        }

        impl #private::serde::Serialize for #proxy {
            fn serialize<S: #private::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                #private::serde::Serialize::serialize(&self.base, s)
            }
        }

        impl<'de> #private::serde::Deserialize<'de> for #proxy {
            fn deserialize<D: #private::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                <#mp::manager::BaseProxy as #private::serde::Deserialize>::deserialize(d).map(|base| #proxy { base })
            }
        }

        impl #private::Registered for #self_ty {
            const TYPEID: &'static str = #typeid;

            #[allow(unused_variables, unreachable_code)]
            fn construct(__ctor: &str, __args: &[u8]) -> ::std::result::Result<Self, #private::RemoteError> {
                match __ctor {
                    #(#ctor_arms)*
                    _ => Err(#private::no_such_method(#typeid, __ctor)),
                }
            }

            #[allow(unused_variables, clippy::unit_arg, clippy::let_unit_value)]
            fn dispatch(
                __this: &::std::sync::RwLock<Self>,
                __method: &str,
                __args: &[u8],
                __out: &mut ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), #private::RemoteError> {
                match __method {
                    #(#method_arms)*
                    _ => Err(#private::no_such_method(#typeid, __method)),
                }
            }
        }

        #[#private::linkme::distributed_slice(#private::REGISTRY)]
        #[linkme(crate = #private::linkme)]
        #[allow(non_upper_case_globals)]
        static #static_name: #private::TypeRegistration = #private::TypeRegistration::of::<#self_ty>();
    })
}
