//! Symbol names as a reader expects them: Rust and C++ names demangled, every
//! other name exactly as the symbol table spells it.
//!
//! samply-symbols' `demangle_any` (what minidump-stackwalk shows) strips the
//! leading `_` of any name it cannot demangle, a macOS convention: glibc's
//! `__strlen_evex` became `_strlen_evex` and `_start` became `start`. Here a
//! name is handed to a demangler only when it carries that demangler's
//! prefix (`_R` for Rust v0, `_Z` for the Itanium C++ ABI and legacy Rust),
//! and a name no demangler accepts is kept as it is.
//!
//! C++ names read as binutils (`c++filt`, `nm -C`, `addr2line -C`) and gdb
//! print them, so that a name can be searched for in what those tools show:
//! with the return type of a template function (the only functions whose
//! mangled name records it), and with binutils' space between a function
//! type's return type and its parameters (`std::function<Result<T> (int)>`),
//! which cpp_demangle leaves out after a template argument list.

/// The readable form of the symbol name `raw`.
pub(crate) fn demangle(raw: &str) -> String {
    if raw.starts_with("_R") || raw.starts_with("_Z") {
        // Legacy Rust names are Itanium-shaped (`_ZN…17h<hash>E`): rustc's
        // demangler accepts only those, and `{:#}` leaves the hash out.
        if let Ok(rust) = rustc_demangle::try_demangle(raw) {
            return format!("{rust:#}");
        }
    }
    if raw.starts_with("_Z")
        && let Ok(symbol) = cpp_demangle::Symbol::new(raw)
        && let Ok(text) = symbol.demangle(&cpp_demangle::DemangleOptions::default())
    {
        return space_function_types(&text);
    }
    raw.to_owned()
}

/// `T<A>(B)` inside a template argument list is a function type returning
/// `T<A>`: binutils writes it `T<A> (B)`.
fn space_function_types(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // `operator<<`, `operator->`, `operator<=>`…: not brackets.
        if out.ends_with("operator") && matches!(c, '<' | '>' | '-' | '=') {
            out.push(c);
            while let Some(&next) = chars.peek().filter(|n| matches!(n, '<' | '>' | '=' | '*')) {
                out.push(next);
                chars.next();
            }
            continue;
        }
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            '(' if depth > 0 && out.ends_with('>') => out.push(' '),
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn c_names_are_kept_with_their_underscores() {
        for name in ["__strlen_evex", "__libc_start_call_main", "_start", "main", "_IO_puts", "__GI_raise", "_"] {
            assert_eq!(demangle(name), name);
        }
    }

    #[test]
    fn cpp_names_are_demangled_as_binutils_shows_them() {
        assert_eq!(
            demangle("_ZN4nodeL5AbortERKN2v820FunctionCallbackInfoINS0_5ValueEEE"),
            "node::Abort(v8::FunctionCallbackInfo<v8::Value> const&)"
        );
        assert_eq!(demangle("_ZSt9terminatev"), "std::terminate()");
        assert_eq!(demangle("_Z5templIiEvT_"), "void templ<int>(int)");
        assert_eq!(
            demangle(
                "_ZN4node14StartExecutionEPNS_11EnvironmentESt8functionIFN2v810MaybeLocalINS3_5ValueEEERKNS_26StartExecutionCallbackInfoEEE"
            ),
            "node::StartExecution(node::Environment*, std::function<v8::MaybeLocal<v8::Value> (node::StartExecutionCallbackInfo const&)>)"
        );
        // Operators are not brackets.
        assert_eq!(
            demangle("_ZStlsISt11char_traitsIcEERSt13basic_ostreamIcT_ES5_PKc"),
            "std::basic_ostream<char, std::char_traits<char> >& std::operator<< <std::char_traits<char> >(std::basic_ostream<char, std::char_traits<char> >&, char const*)"
        );
        assert_eq!(demangle("_ZN1AptEv"), "A::operator->()");
        // A clone of a function keeps its suffix, as c++filt shows it.
        assert_eq!(demangle("_Z3fooi.cold"), "foo(int) [clone .cold]");
    }

    #[test]
    fn rust_names_lose_only_their_hash() {
        assert_eq!(demangle("_ZN4core9panicking5panic17h0123456789abcdefE"), "core::panicking::panic");
        assert_eq!(demangle("_RNvNtCs1234_4core9panicking5panic"), "core::panicking::panic");
    }

    #[test]
    fn malformed_mangled_names_are_kept() {
        for name in ["_Z", "_ZN3foo", "_R", "_Zzz"] {
            assert_eq!(demangle(name), name);
        }
    }
}
