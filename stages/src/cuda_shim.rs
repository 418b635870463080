//! The run-time half of the `cuda` build's lazily bound CUDA libraries.
//!
//! The build script (`build_cuda_shim.rs`) defines every driver, NVRTC and cuBLAS function
//! cudarc calls as an entry point that, on its first call, asks [`bind`] for the real
//! function and jumps to it from then on. So the `cuda` binary starts where no NVIDIA
//! library is installed (`repro --version`, `dag`, `status`, `verify` never touch one), and
//! [`preflight`] tells, before the device is opened, whether the libraries are there: the
//! driver `libcuda.so.1`, NVRTC (`libnvrtc.so.13`, else `.so.12`) and cuBLAS
//! (`libcublas.so.13`, else `.so.12`, which loads its `libcublasLt`). They are found the way
//! the dynamic loader finds any library: `LD_LIBRARY_PATH`, then the system's paths.
//!
//! One function is wrapped rather than forwarded: dfdx compiles a few kernels at run time
//! with NVRTC, and the include paths it passes are those of the machine that built the
//! binary (its CUDA headers and its build directory). [`nvrtc_compile`] adds those where a
//! copied binary finds them: `$REPRO_CUDA_INCLUDE`, default `cuda-include/` next to the
//! executable, and its `cccl/` (`bench/gpu_bundle.sh` puts them there).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

mod generated {
    include!(concat!(env!("OUT_DIR"), "/cuda_shim.rs"));
}
use generated::{LIBS, SLOTS, SYMBOLS, WRAPPED};

/// The handle of each library of [`LIBS`], or why none of its sonames loaded.
fn handles() -> &'static [Result<usize, String>] {
    static HANDLES: OnceLock<Vec<Result<usize, String>>> = OnceLock::new();
    HANDLES.get_or_init(|| LIBS.iter().map(|sonames| open(sonames)).collect())
}

/// `dlopen`s the first of `sonames` that loads.
fn open(sonames: &[&str]) -> Result<usize, String> {
    let mut why = Vec::new();
    for name in sonames {
        let c = CString::new(*name).unwrap();
        // SAFETY: a NUL-terminated name; the handle is kept for the life of the process.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !h.is_null() {
            return Ok(h as usize);
        }
        // SAFETY: dlerror returns null or a NUL-terminated message.
        let e = unsafe { libc::dlerror() };
        why.push(if e.is_null() {
            format!("{name}: not found")
        } else {
            unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
        });
    }
    Err(why.join("; "))
}

/// Refers to the generated entry points' object, so that the linker keeps it (see
/// `build_cuda_shim.rs`).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn anchor() {
    extern "C" {
        fn repro_cuda_shim_anchor();
    }
    // SAFETY: the anchor is a bare `ret`.
    unsafe { repro_cuda_shim_anchor() };
}
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn anchor() {}

/// What [`preflight`] found missing.
pub struct Missing {
    /// The driver library itself (`libcuda.so.1`) is missing.
    pub driver: bool,
    /// Each missing library's sonames and the loader's reason for the first, e.g.
    /// `libcuda.so.1 (libcuda.so.1: cannot open shared object file: ...)`; the driver
    /// alone when it is missing.
    pub libraries: String,
}

/// Loads the driver, NVRTC and cuBLAS libraries (once); says which are missing.
pub fn preflight() -> Result<(), Missing> {
    anchor();
    let mut driver = false;
    let mut libraries = Vec::new();
    for (i, h) in handles().iter().enumerate() {
        if let Err(why) = h {
            let first = why.split("; ").next().unwrap_or_default();
            let entry = format!("{} ({first})", LIBS[i].join(" or "));
            if LIBS[i][0].starts_with("libcuda.") {
                // without the driver nothing else matters: name it alone
                driver = true;
                libraries = vec![entry];
                break;
            }
            libraries.push(entry);
        }
    }
    if libraries.is_empty() {
        Ok(())
    } else {
        Err(Missing {
            driver,
            libraries: libraries.join(", "),
        })
    }
}

/// Binds entry point `i`: called from its assembly on its first call, returns the real
/// function's address. A library or symbol that cannot be found ends the process with
/// one line on stderr (exit code 1): there is no error value to return through a call
/// whose signature the binder does not know. [`preflight`] rules out the missing library
/// before the device is opened; a missing symbol means a driver older than the toolkit.
#[allow(dead_code)]
extern "C" fn bind(i: usize) -> usize {
    let (name, lib) = SYMBOLS[i];
    match symbol(lib, name) {
        Ok(f) => {
            SLOTS[i].store(f, Ordering::Release);
            f
        }
        Err(e) => {
            eprintln!("error: CUDA: {e}");
            std::process::exit(1);
        }
    }
}

/// The address of `name` (NUL-terminated) in library `lib` of [`LIBS`].
fn symbol(lib: usize, name: &str) -> Result<usize, String> {
    let h = *handles()[lib].as_ref().map_err(Clone::clone)?;
    // SAFETY: `name` is NUL-terminated and `h` a live handle.
    let f = unsafe { libc::dlsym(h as *mut c_void, name.as_ptr().cast()) };
    if f.is_null() {
        Err(format!(
            "{} has no {} (is the NVIDIA driver older than CUDA 13?)",
            LIBS[lib][0],
            name.trim_end_matches('\0')
        ))
    } else {
        Ok(f as usize)
    }
}

/// `--include-path=` of the headers next to a copied binary, when that directory exists,
/// and of its `cccl/` (CUDA 13 keeps `<nv/target>`, which `cuda_fp16.h` includes, there).
fn include_flags() -> &'static [CString] {
    static FLAGS: OnceLock<Vec<CString>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let dir: Option<std::path::PathBuf> = match std::env::var_os("REPRO_CUDA_INCLUDE") {
            Some(d) => Some(d.into()),
            None => std::env::current_exe()
                .ok()
                .and_then(|e| Some(e.parent()?.join("cuda-include"))),
        };
        let Some(dir) = dir.filter(|d| d.is_dir()) else {
            return Vec::new();
        };
        [dir.clone(), dir.join("cccl")]
            .iter()
            .filter(|d| d.is_dir())
            .filter_map(|d| CString::new(format!("--include-path={}", d.display())).ok())
            .collect()
    })
}

/// NVRTC's `nvrtcCompileProgram` with [`include_flags`] appended to the options (the
/// generated entry point `nvrtcCompileProgram` jumps here).
///
/// # Safety
/// As NVRTC's: `options` holds `num_options` NUL-terminated strings.
#[allow(dead_code)]
unsafe extern "C" fn nvrtc_compile(
    prog: *mut c_void,
    num_options: c_int,
    options: *const *const c_char,
) -> c_int {
    type Compile = unsafe extern "C" fn(*mut c_void, c_int, *const *const c_char) -> c_int;
    const NAME: &str = "nvrtcCompileProgram\0";
    let found = WRAPPED
        .iter()
        .find(|(n, _)| *n == NAME)
        .ok_or_else(|| format!("{NAME} is not in cuda/symbols.txt"))
        .and_then(|&(_, lib)| symbol(lib, NAME));
    let f = match found {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: CUDA: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: the address of NVRTC's nvrtcCompileProgram, of this signature.
    let real: Compile = unsafe { std::mem::transmute::<usize, Compile>(f) };
    let mut opts: Vec<*const c_char> = if num_options > 0 && !options.is_null() {
        // SAFETY: the caller passes `num_options` pointers.
        unsafe { std::slice::from_raw_parts(options, num_options as usize) }.to_vec()
    } else {
        Vec::new()
    };
    opts.extend(include_flags().iter().map(|f| f.as_ptr()));
    // SAFETY: the caller's program and options, plus NUL-terminated strings that live
    // for the whole process.
    unsafe { real(prog, opts.len() as c_int, opts.as_ptr()) }
}
