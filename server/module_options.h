// The options of every model module, each under its own type: a module
// reads its flags into its own struct (ModelModule::from_flags) and makes
// its model from it. A type never set reads as its defaults. Copies are
// deep. Not thread-safe to modify; const reads are.
#ifndef MERCATO_SERVER_MODULE_OPTIONS_H_
#define MERCATO_SERVER_MODULE_OPTIONS_H_

#include <any>
#include <map>
#include <typeindex>

namespace mercato::server {

class ModuleOptions {
 public:
  // The options of type T, set to T's defaults the first time.
  template <class T>
  T& Mutable() {
    std::any& slot = values_[std::type_index(typeid(T))];
    if (!slot.has_value()) slot = T{};
    return *std::any_cast<T>(&slot);
  }

  // The options of type T as set, or T's defaults.
  template <class T>
  const T& Get() const {
    auto it = values_.find(std::type_index(typeid(T)));
    if (it == values_.end()) {
      static const T defaults{};
      return defaults;
    }
    return *std::any_cast<T>(&it->second);
  }

 private:
  std::map<std::type_index, std::any> values_;
};

}  // namespace mercato::server

#endif  // MERCATO_SERVER_MODULE_OPTIONS_H_
